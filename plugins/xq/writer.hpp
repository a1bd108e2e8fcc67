// writer.hpp: the streaming .xq writer.
//
// Every tensor's segments go straight to a temporary file beside the final
// one as they arrive (each at a multiple of the alignment); finish() appends
// the manifest (FlatBuffers, abi/schema/xq.fbs), writes the header, fsyncs
// and renames the file into place. abort() (an error, Ctrl-C through the
// runner's cancellation) removes the temporary file: nothing half-written is
// ever visible under the final name.
//
// Beside each quantized tensor's canonical segment it stores the packed
// layouts of the providers named by the `layouts` parameter (default
// "cpu,cuda": sdk::cpu_layout::pack, the function the cpu provider packs
// with, and sdk::cuda_layout::pack, byte-identical to the cuda provider's
// device packing) when that provider takes the tensor, so loading on either
// provider does no packing (provider_layouts.cpp).
//
// Packing is the slow part (an 8-layer 8B-shaped model: 36 s on one
// thread), so tensors are held in batches (param `pack_batch` quantized
// tensors, default twice the host's threads, and at most 1 GiB of copies)
// and the quantized ones packed one per task on the host's thread pool
// (pack_batch.hpp); every segment is appended in arrival order, so the
// bytes are those of writing one tensor at a time. Each batch logs its
// progress.
#pragma once

#include "container.hpp"
#include "pack_batch.hpp"
#include "provider_layouts.hpp"

#include <xquant/sdk/plugin.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace flatbuffers {
class FlatBufferBuilder;
}

namespace xquant::xqc {

class Writer : public sdk::WriterBase {
 public:
  Writer(const sdk::Host& host, const xq_writer_options& options);
  ~Writer() override;

  void add_dense(const char* name, const xq_tensor_view& t);
  void add_quantized(const char* module, const xq_quant_tensor& q);
  // The run's quantization report (JSON), stored as the manifest's report_json.
  void set_report(const char* json);
  void finish();
  void abort() noexcept;

 private:
  struct Segment {
    std::string layout;
    uint64_t offset = 0, size = 0;
  };
  struct Entry {
    std::string name;
    xq_dtype dtype = XQ_DTYPE_INVALID;
    std::vector<int64_t> shape;
    bool quantized = false;
    xq_quant_tensor desc{};
    bool has_g_idx = false;
    std::vector<Segment> segments;
  };
  struct ConfigValue {
    std::string key;
    xq_value_type type = XQ_VALUE_NONE;
    int64_t i = 0;
    double f = 0;
    std::string s;
    std::vector<int64_t> ints;
    std::vector<double> floats;
    std::vector<std::string> strings;
  };
  struct File {
    std::string name;
    uint64_t offset = 0, size = 0;
  };

  void copy_config(const xq_kv* config);
  void start_name(const std::string& name);
  Segment append(const std::string& layout, const void* data, uint64_t size);
  void write_at(uint64_t offset, const void* data, uint64_t size);
  void add_companion_files();
  // Packs the held quantized tensors and appends their segments in order.
  void flush_batch();
  std::vector<uint8_t> build_manifest();

  std::filesystem::path final_;
  std::filesystem::path temp_;
  int fd_ = -1;
  uint64_t end_ = sizeof(FileHeader);
  uint32_t alignment_ = kMinAlignment;
  bool store_layouts_ = true;
  LayoutChoice layouts_;
  std::filesystem::path source_;
  std::string recipe_;
  std::string report_;
  std::vector<ConfigValue> config_;
  std::vector<Entry> entries_;
  std::set<std::string> names_;
  std::vector<File> files_;
  PackBatch batch_;
  std::vector<size_t> batch_entries_;  // entries_ index of each held tensor, in arrival order
  uint64_t pack_batch_ = 1;
  uint64_t quantized_written_ = 0;
  bool done_ = false;
};

}  // namespace xquant::xqc
