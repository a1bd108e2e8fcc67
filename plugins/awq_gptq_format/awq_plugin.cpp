// awq_plugin.cpp: the `awq` format plugin's descriptor (AutoAWQ GEMM
// checkpoints, as transformers and vLLM load them). The class is
// format_plugin.hpp's; the layout is layout.hpp's.
#include "format_plugin.hpp"

namespace xquant::hfq {

constexpr const char* kAwqCapabilities[] = {"write:awq-gemm", "read:awq-gemm", "bits:4",
                                            "strategy:group", "zero-points:always", nullptr};

constexpr xq_param_spec kAwqParams[] = {{nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr xq_plugin_descriptor kAwqDescriptor = sdk::describe<Format<Kind::kAwq>>(
    XQ_PLUGIN_FORMAT, "awq", "1.0.0",
    "AutoAWQ GEMM checkpoints (qweight/qzeros/scales, interleaved nibbles): 4-bit group-wise, read and written",
    kAwqCapabilities, kAwqParams, &sdk::FormatAdapter<Format<Kind::kAwq>>::vtable);

}  // namespace xquant::hfq

XQ_SDK_ENTRY(xquant::hfq::kAwqDescriptor)
