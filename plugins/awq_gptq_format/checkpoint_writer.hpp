// checkpoint_writer.hpp: the streaming AWQ/GPTQ checkpoint writer.
//
// Tensors go to a temporary model.safetensors as they arrive; finish()
// writes config.json (the source's, or one synthesised from the canonical
// keys, plus quantization_config) and the companion tokenizer files under
// temporary names, fsyncs them and only then renames them into place.
// abort() leaves nothing behind. A tensor the layout cannot hold exactly is
// refused with the reason (never rounded again): AWQ is 4-bit group-wise
// without act-order; GPTQ is 2/4/8-bit group-wise or per-channel; both are
// weight-only, with one bit width and group size per checkpoint.
#pragma once

#include "layout.hpp"

#include <writer.hpp>  // ../compressed_tensors/src: compressed-tensors' SourceModel and synthesize_hf_config

namespace xquant::ct {
class HfFolderStage;  // ../compressed_tensors/src/hf_folder_stage.hpp
}

#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/safetensors.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace xquant::hfq {

class Writer : public sdk::WriterBase {
 public:
  Writer(const sdk::Host& host, const xq_writer_options& options, Kind kind);
  ~Writer() override;

  void add_dense(const char* name, const xq_tensor_view& t);
  void add_quantized(const char* module, const xq_quant_tensor& q);
  void finish();
  void abort() noexcept;

 private:
  void check_layout(const std::string& module, const xq_quant_tensor& q);
  void check_uniform(const std::string& module, const xq_quant_tensor& q);

  Kind kind_;
  bool v2_ = false;
  std::filesystem::path out_dir_, source_;
  std::unique_ptr<ct::HfFolderStage> stage_;  // config.json and companion files
  ct::SourceModel model_;
  std::unique_ptr<sdk::safetensors::Writer> shard_;
  std::optional<Settings> settings_;  // from the first quantized module
  std::string first_module_;
  std::set<std::string> ignored_, quantized_, dense_linears_;
  std::string embed_dtype_, scale_dtype_;
  bool done_ = false;
};

}  // namespace xquant::hfq
