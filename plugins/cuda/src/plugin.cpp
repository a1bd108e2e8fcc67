// plugin.cpp: the `cuda` kernel provider's descriptor and C vtable. Each
// entry runs the Provider method inside sdk::guard, so no exception crosses
// the ABI; functions that cannot report a status (score, supports_op,
// qweight_layout, free, qweight_release) swallow errors by contract.
#include "provider.hpp"

namespace {

using xqcuda::Provider;
using xquant::sdk::guard;

Provider* self(void* state) { return static_cast<Provider*>(state); }

uint32_t k_score(void* state, const char** why) noexcept {
  uint32_t s = 0;
  if (why) *why = "cuda provider: no state";
  if (!state) return 0;
  try {
    s = self(state)->score(why);
  } catch (...) {
    s = 0;
  }
  return s;
}
xq_status k_alloc(void* state, uint64_t n, void** out) noexcept {
  return guard(self(state)->host, [&] { self(state)->alloc(n, out); });
}
void k_free(void* state, void* p) noexcept {
  try {
    self(state)->free(p);
  } catch (...) {
  }
}
xq_status k_upload(void* state, void* dst, const void* src, uint64_t n) noexcept {
  return guard(self(state)->host, [&] { self(state)->upload(dst, src, n); });
}
xq_status k_download(void* state, void* dst, const void* src, uint64_t n) noexcept {
  return guard(self(state)->host, [&] { self(state)->download(dst, src, n); });
}
xq_status k_synchronize(void* state) noexcept {
  return guard(self(state)->host, [&] { self(state)->synchronize(); });
}
uint32_t k_supports_op(void* state, const xq_op* op) noexcept {
  try {
    return op && self(state)->supports(*op, nullptr) ? 1u : 0u;
  } catch (...) {
    return 0;
  }
}
xq_status k_run_op(void* state, const xq_op* op) noexcept {
  return guard(self(state)->host, [&] {
    if (!op) throw xquant::sdk::Error(XQ_ERR_INVALID_ARGUMENT, "cuda: run_op(NULL)");
    self(state)->run(*op);
  });
}
xq_status k_qweight_prepare(void* state, const xq_quant_tensor* q, xq_qweight** out) noexcept {
  return guard(self(state)->host, [&] {
    if (!q || !out) throw xquant::sdk::Error(XQ_ERR_INVALID_ARGUMENT, "cuda: qweight_prepare(NULL)");
    *out = self(state)->prepare(*q);
  });
}
void k_qweight_release(void* state, xq_qweight* w) noexcept {
  try {
    self(state)->release(w);
  } catch (...) {
  }
}
const char* k_qweight_layout(void* state, const xq_qweight* w) noexcept { return self(state)->layout(w); }

constexpr xq_kernel_vtable kVtable{sizeof(xq_kernel_vtable), 0,         &k_score,         &k_alloc,
                                   &k_free,                  &k_upload, &k_download,      &k_synchronize,
                                   &k_supports_op,           &k_run_op, &k_qweight_prepare, &k_qweight_release,
                                   &k_qweight_layout};

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
    nullptr, &kVtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
