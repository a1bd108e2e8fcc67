// plugin.cpp: the `safetensors` loader's descriptor and entry point.
//
// Only wiring lives here: probing and opening go to model.cpp, the config
// mapping to hf_config.cpp, the container rules to sdk/safetensors.hpp.
#include "model.hpp"

#include <xquant/sdk/plugin.hpp>

namespace xquant::st {

class Loader : public sdk::PluginBase {
 public:
  using Model = st::Model;
  using sdk::PluginBase::PluginBase;
  uint32_t probe(const std::string& path) { return probe_path(path); }
  std::unique_ptr<Model> open(const std::string& path) { return std::make_unique<Model>(host, path); }
};

constexpr const char* kCapabilities[] = {"container:safetensors", "sharded", "dtype:F32,F16,BF16,F64,F8,I8-I64,U8-U64",
                                         "read:F32,F16,BF16", nullptr};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<Loader>(
    XQ_PLUGIN_LOADER, "safetensors", "1.0.0",
    "Hugging Face safetensors checkpoints (single file or sharded), validated and memory-mapped", kCapabilities,
    nullptr, &sdk::LoaderAdapter<Loader>::vtable);

}  // namespace xquant::st

XQ_SDK_ENTRY(xquant::st::kDescriptor)
