// canonical_codec.hpp: a canonical quantized tensor <-> the bytes of its
// "canonical" segment in an .xq file (part offsets: container.hpp
// canonical_parts). Exact both ways: scales are stored in their scale_dtype,
// which holds them exactly by the canonical tensor's contract.
#pragma once

#include "container.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/sdk/tensor.hpp>

#include <vector>

namespace xquant::xqc {

// The segment bytes of `q`. Throws sdk::Error naming what cannot be stored
// (a code outside its bit range, an unsupported scale dtype).
std::vector<uint8_t> encode_canonical(const xq_quant_tensor& q);

// Fills `out` (buffers from host.alloc, metadata from `desc`) from `size`
// bytes at `data`; `has_g_idx` as the manifest says. The caller has checked
// that `size` equals canonical_parts(...).total. Throws sdk::Error
// (XQ_ERR_MALFORMED) naming the tensor when a g_idx entry is out of range.
void decode_canonical(const sdk::Host& host, const std::string& name, const xq_quant_tensor& desc, bool has_g_idx,
                      const uint8_t* data, uint64_t size, sdk::QuantTensor& out);

}  // namespace xquant::xqc
