// plugin.cpp: the `cuda` kernel provider's descriptor. sdk::KernelAdapter
// turns the Provider class into the C vtable, so no exception crosses the
// ABI; entries that cannot report a status (score, supports_op,
// qweight_layout, free, qweight_release) answer "no" or do nothing on error
// by contract.
#include "provider.hpp"

namespace {

using xqcuda::Provider;

// Exactly what run_op executes (docs/cuda.md states the shape limits).
constexpr const char* kCapabilities[] = {
    "op:qmatmul",
    "op:matmul",
    "op:dequantize",
    "op:quantize_act",
    "op:get_rows",
    "op:rms_norm",
    "op:rope",
    "op:attention",
    "op:swiglu",
    "op:add",
    "op:mul",
    "op:convert",
    "op:kv_write",
    "op:paged_attention",
    "op:moe_route",
    "op:moe_combine",
    "dtype:f32",
    "layout:cuda-w4a16-mma",
    "layout:cuda-w8a8-int8-nk",
    "weight:int2-4-group-pow2",
    "weight:int2-4-channel",
    "weight:int2-8-w8a8-channel",
    "weight:zero-point",
    "weight:act-order",
    "act:none",
    "act:dynamic-token",
    "act:static-tensor",
    "dtype:bf16",
    "dtype:f16",
    "dtype:i8",
    "dtype:f8_e4m3",
    nullptr};

constexpr xq_plugin_descriptor kDescriptor = xquant::sdk::describe<Provider>(
    XQ_PLUGIN_KERNEL_PROVIDER, "cuda", "0.1.0",
    "NVIDIA GPU kernels: fused W4A16 GEMM/GEMV, INT8 and FP8 W8A8 GEMMs, activation quantization", kCapabilities,
    nullptr, &xquant::sdk::KernelAdapter<Provider>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
