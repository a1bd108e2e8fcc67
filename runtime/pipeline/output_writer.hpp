// output_writer.hpp: the format plugin's writer as the runners use it: one
// open writer, tensors added one by one, finished once. Destroying it
// unfinished aborts the writer, which removes everything it wrote, so a
// failing run never leaves a half checkpoint under the final name.
//
// A recorder (set_recorder) sees every tensor added, in order: the resume
// checkpoint of a calibrated run keeps a finished layer's writes with it
// (pipeline/resume_checkpoint.hpp).
#pragma once

#include "core/kv.hpp"
#include "plugins/registry.hpp"

#include <xquant/xq_tensor.h>

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace xquant {

class OutputWriter {
 public:
  using DenseRecorder = std::function<void(const std::string& name, const xq_tensor_view& view)>;
  using QuantRecorder = std::function<void(const std::string& module, const xq_quant_tensor& q)>;

  // Opens `format`'s writer on `out_dir`; `ignored_modules` are the Linear
  // modules the checkpoint lists as left dense; `recipe_yaml` the pipeline
  // (formats that store their recipe keep it).
  OutputWriter(LoadedPlugin& format, const std::filesystem::path& out_dir, const std::filesystem::path& source,
               const Kv& model_config, const Kv& params, const std::vector<std::string>& ignored_modules,
               const std::string& recipe_yaml = "");
  ~OutputWriter();
  OutputWriter(const OutputWriter&) = delete;
  OutputWriter& operator=(const OutputWriter&) = delete;

  // A tensor named in store_as_bf16 is converted to BF16 first (an F32 or
  // F16 source; BF16 passes as it is).
  void add_dense(const std::string& name, const xq_tensor_view& view);
  void store_as_bf16(std::set<std::string> tensor_names) { bf16_tensors_ = std::move(tensor_names); }
  void add_quantized(const std::string& module, const xq_quant_tensor& q);
  // Hands the run's quantization report (JSON) to a format that stores it
  // (writer_set_report); a format without that entry keeps none.
  void set_report(const std::string& report_json);
  // Writes the checkpoint under its final name; frees the writer also on failure.
  void finish();

  void set_recorder(DenseRecorder dense, QuantRecorder quant);
  LoadedPlugin& format() const { return format_; }
  uint64_t tensors_written() const { return tensors_written_; }

 private:
  LoadedPlugin& format_;
  void* handle_ = nullptr;
  uint64_t tensors_written_ = 0;
  DenseRecorder record_dense_;
  std::set<std::string> bf16_tensors_;
  QuantRecorder record_quant_;
};

}  // namespace xquant
