// plugin.cpp: the `compressed-tensors` format plugin's descriptor, params
// and the read side's parsed-config cache. Writing lives in writer.cpp,
// reading in reader.cpp, the config schema in scheme.cpp.
#include "reader.hpp"
#include "scheme.hpp"
#include "writer.hpp"

#include <xquant/sdk/plugin.hpp>

#include <memory>
#include <mutex>

namespace xquant::ct {

class Format : public sdk::PluginBase {
 public:
  using Writer = ct::Writer;
  using sdk::PluginBase::PluginBase;

  std::unique_ptr<Writer> open_writer(const xq_writer_options& o) { return std::make_unique<Writer>(host, o); }

  uint32_t detect(const sdk::KvReader& config) {
    auto v = config.get("quantization_config");
    if (!v || v->type != XQ_VALUE_STRING) return 0;
    try {
      auto j = nlohmann::json::parse(v->s);
      if (j.is_object() && j.value("quant_method", std::string()) == "compressed-tensors") return 90;
    } catch (const nlohmann::json::exception&) {
    }
    return 0;
  }

  void read_module(const sdk::KvReader& config, const xq_tensor_source& src, const char* module, xq_quant_tensor& out) {
    auto v = config.get("quantization_config");
    if (!v || v->type != XQ_VALUE_STRING)
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "the checkpoint has no quantization_config");
    ct::read_module(host, *parsed(v->s), src, module, out);
  }

 private:
  // read_module runs once per Linear; parse (and compile regexes) once per
  // distinct config text.
  std::shared_ptr<const QuantConfig> parsed(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cache_ || cache_text_ != text) {
      cache_ = std::make_shared<const QuantConfig>(parse_quant_config(text));
      cache_text_ = text;
    }
    return cache_;
  }
  std::mutex mu_;
  std::string cache_text_;
  std::shared_ptr<const QuantConfig> cache_;
};

constexpr const char* kCapabilities[] = {"write:pack-quantized", "write:int-quantized", "write:float-quantized",
                                         "read:pack-quantized",  "read:int-quantized",  "read:naive-quantized",
                                         "read:float-quantized", "bits:2-8",            "type:float",
                                         "strategy:tensor,channel,group",
                                         "act:int8-dynamic-token,int8-static-tensor,fp8-dynamic-token", "g_idx",
                                         nullptr};

constexpr xq_param_spec kParams[] = {
    {"max_shard_bytes", XQ_VALUE_INT, nullptr,
     "split model.safetensors into model-0000K-of-0000N.safetensors shards of at most this many bytes "
     "(a module's tensors stay together); unset or 0: one file"},
    {"allow_ragged_groups", XQ_VALUE_BOOL, "false",
     "write group-quantized modules whose input width is not a multiple of the group size (a ragged last "
     "group); xquant reads them, but compressed-tensors and vLLM refuse them"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<Format>(
    XQ_PLUGIN_FORMAT, "compressed-tensors", "1.0.0",
    "compressed-tensors checkpoints (llm-compressor/vLLM): pack-quantized and int-quantized INT weights, "
    "float-quantized FP8 E4M3",
    kCapabilities, kParams, &sdk::FormatAdapter<Format>::vtable);

}  // namespace xquant::ct

XQ_SDK_ENTRY(xquant::ct::kDescriptor)
