// pack_batch.hpp: the tensors the xq writer holds until it packs them
// together: quantized ones one per task on the host's thread pool (their
// provider layouts; the writer encodes the canonical segment, which also
// validates the codes, when the tensor arrives), dense ones as they are,
// all returned in the order they arrived. The writer appends them in that
// order, so the file is byte-identical to packing each tensor as it comes
// (tests/formats/test_xq_parallel_write.cpp).
#pragma once

#include "provider_layouts.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/xq_tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace xquant::xqc {

class PackBatch {
 public:
  struct Packed {
    std::vector<uint8_t> canonical;  // a dense tensor's bytes
    std::vector<PackedSegment> layouts;
  };

  // Holds a copy of `q` (the host lends its buffers only for the call) and
  // its canonical segment.
  void add(const char* module, const xq_quant_tensor& q, std::vector<uint8_t> canonical);
  // Holds a copy of a dense tensor's bytes.
  void add_dense(const void* data, uint64_t nbytes);
  size_t quantized() const { return quantized_; }
  bool empty() const { return held_.empty(); }
  uint64_t held_bytes() const { return held_bytes_; }

  // Packs every held tensor (layouts: none when `store_layouts` is false)
  // and empties the batch. The first error thrown by any tensor's packing
  // is rethrown here.
  std::vector<Packed> pack(const sdk::Host& host, const LayoutChoice& layouts, bool store_layouts);

 private:
  struct Held {
    bool dense = false;
    std::vector<uint8_t> bytes;  // dense: the tensor; quantized: the canonical segment
    std::string module;
    std::vector<int8_t> codes, zero_points;
    std::vector<float> scales;
    std::vector<int32_t> g_idx;
    xq_quant_tensor q{};  // points into the vectors above
  };
  std::vector<std::unique_ptr<Held>> held_;
  uint64_t held_bytes_ = 0;
  size_t quantized_ = 0;
};

}  // namespace xquant::xqc
