// plugin.cpp: the `cpu` kernel provider's descriptor and vtable.
//
// Memory is host memory (alloc/upload/download are host allocations and
// memcpy). Every callback runs under sdk::guard so no exception crosses the
// C boundary; supports_op runs the same validation as run_op, so it is honest
// by construction. The score is always positive: the CPU is always there.
#include "cpu.hpp"

#include <xquant/sdk/plugin.hpp>

#include <cblas.h>

#include <cstring>

namespace xquant::cpu {
namespace {

class CpuProvider : public sdk::PluginBase {
 public:
  explicit CpuProvider(const Host& h) : PluginBase(h) {
    // OpenBLAS gets as many threads as the host pool: GEMMs run from the
    // calling thread while our pool idles, so the two never oversubscribe.
    unsigned n = host.num_threads();
    openblas_set_num_threads(static_cast<int>(n ? n : 1));
  }
};

CpuProvider* self(void* state) { return static_cast<CpuProvider*>(state); }

uint32_t score(void*, const char** why) noexcept {
  if (why) *why = "host CPU, F32 + OpenBLAS SGEMM, int8 quantized GEMM";
  return 1;
}

xq_status alloc(void* state, uint64_t nbytes, void** out) noexcept {
  auto* s = self(state);
  return sdk::guard(s->host, [&] {
    if (!out) throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: alloc: out is NULL");
    void* p = s->host.alloc<unsigned char>(nbytes ? nbytes : 1);
    *out = p;
  });
}

void dealloc(void* state, void* p) noexcept { self(state)->host.free(p); }

xq_status copy(void* state, void* dst, const void* src, uint64_t n) noexcept {
  auto* s = self(state);
  return sdk::guard(s->host, [&] {
    if (n && (!dst || !src)) throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: copy with a NULL pointer");
    if (n) std::memmove(dst, src, n);
  });
}

xq_status synchronize(void*) noexcept { return XQ_OK; }

uint32_t supports_op(void*, const xq_op* op) noexcept {
  if (!op) return 0;
  try {
    check_op(*op);
    return 1;
  } catch (...) {
    return 0;
  }
}

xq_status run_op(void* state, const xq_op* op) noexcept {
  auto* s = self(state);
  return sdk::guard(s->host, [&] {
    if (!op) throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: run_op: op is NULL");
    check_op(*op);
    const Host& h = s->host;
    switch (op->type) {
      case XQ_OP_MATMUL: run_matmul(h, *op); break;
      case XQ_OP_QMATMUL: run_qmatmul(h, *op); break;
      case XQ_OP_DEQUANTIZE: run_dequantize(h, *op); break;
      case XQ_OP_RMS_NORM: run_rms_norm(h, *op); break;
      case XQ_OP_ROPE: run_rope(h, *op); break;
      case XQ_OP_ATTENTION: run_attention(h, *op); break;
      case XQ_OP_SWIGLU: run_swiglu(h, *op); break;
      case XQ_OP_ADD: run_add_mul(h, *op, false); break;
      case XQ_OP_MUL: run_add_mul(h, *op, true); break;
      case XQ_OP_GET_ROWS: run_get_rows(h, *op); break;
      case XQ_OP_QUANTIZE_ACT: run_quantize_act(h, *op); break;
      case XQ_OP_CONVERT: run_convert(h, *op); break;
    }
  });
}

xq_status qweight_prepare(void* state, const xq_quant_tensor* q, xq_qweight** out) noexcept {
  auto* s = self(state);
  return sdk::guard(s->host, [&] {
    if (!q || !out) throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: qweight_prepare: NULL argument");
    *out = prepare_qweight(*q);
  });
}

void qweight_release(void*, xq_qweight* w) noexcept { delete w; }

const char* qweight_layout(void*, const xq_qweight*) noexcept { return "cpu-int8-group"; }

constexpr xq_kernel_vtable kVtable{sizeof(xq_kernel_vtable),
                                   0,
                                   &score,
                                   &alloc,
                                   &dealloc,
                                   &copy,
                                   &copy,
                                   &synchronize,
                                   &supports_op,
                                   &run_op,
                                   &qweight_prepare,
                                   &qweight_release,
                                   &qweight_layout};

constexpr const char* kCapabilities[] = {
    "memory:host",       "op:matmul",       "op:qmatmul",      "op:dequantize",     "op:rms_norm",
    "op:rope",           "op:attention",    "op:swiglu",       "op:add",            "op:mul",
    "op:get_rows",       "op:quantize_act", "op:convert",      "layout:cpu-int8-group", "bits:2-8",
    "granularity:tensor", "granularity:channel", "granularity:group", "g_idx",       "act:none",
    "act:dynamic-token", "act:static-tensor", nullptr};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<CpuProvider>(
    XQ_PLUGIN_KERNEL_PROVIDER, "cpu", "1.0.0",
    "host CPU kernels: F32 ops (OpenBLAS SGEMM) and int8-code quantized GEMM (W2-8 A16, W8A8)", kCapabilities,
    nullptr, &kVtable);

}  // namespace
}  // namespace xquant::cpu

XQ_SDK_ENTRY(xquant::cpu::kDescriptor)
