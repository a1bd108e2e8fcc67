// gptq_plugin.cpp: the `gptq` format plugin's descriptor (AutoGPTQ /
// GPTQModel checkpoints, v1 and v2 zero points, act-order g_idx). The class
// is format_plugin.hpp's; the layout is layout.hpp's.
#include "format_plugin.hpp"

namespace xquant::hfq {

constexpr const char* kGptqCapabilities[] = {"write:gptq,gptq_v2", "read:gptq,gptq_v2", "bits:2,4,8",
                                             "strategy:group,channel", "g_idx", nullptr};

constexpr xq_param_spec kGptqParams[] = {
    {"checkpoint_format", XQ_VALUE_STRING, "gptq",
     "gptq (v1: qzeros hold z - 1, what AutoGPTQ, transformers and vLLM read) or gptq_v2 (GPTQModel: qzeros hold z; "
     "needed when a zero point is 0)"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr xq_plugin_descriptor kGptqDescriptor = sdk::describe<Format<Kind::kGptq>>(
    XQ_PLUGIN_FORMAT, "gptq", "1.0.0",
    "AutoGPTQ/GPTQModel checkpoints (qweight/qzeros/scales/g_idx, v1 and v2 zero points): 2/4/8-bit, read and written",
    kGptqCapabilities, kGptqParams, &sdk::FormatAdapter<Format<Kind::kGptq>>::vtable);

}  // namespace xquant::hfq

XQ_SDK_ENTRY(xquant::hfq::kGptqDescriptor)
