// plugin.cpp: the `cpu` kernel provider's descriptor and vtable.
//
// Memory is host memory (alloc/upload/download are host allocations and
// memcpy). sdk::KernelAdapter turns the class into the C vtable, so no
// exception crosses the C boundary; supports_op runs the same validation as
// run_op, so it is honest by construction. The score is always positive: the
// CPU is always there.
#include "cpu.hpp"
#include "gguf_blocks_weight.hpp"

#include <xquant/sdk/plugin.hpp>

#include <cblas.h>

#include <cstring>

namespace xquant::cpu {
namespace {

class CpuProvider : public sdk::PluginBase {
 public:
  explicit CpuProvider(const Host& h) : PluginBase(h) {
    // OpenBLAS runs single-threaded; our pool splits every SGEMM into blocks
    // of fixed shape (sgemm_nt_blocked). OpenBLAS's own threading partitions
    // by the thread count, which changed results in the last bits between
    // --threads 1 and 2 (AWQ's forward passes picked different scales), and
    // a run must write the same bytes whatever the thread count.
    openblas_set_num_threads(1);
  }

  uint32_t score(const char** why) const {
    if (why) *why = "host CPU, F32 + OpenBLAS SGEMM, int8 quantized GEMM";
    return 1;
  }
  void* alloc(uint64_t nbytes) const { return host.alloc<unsigned char>(nbytes ? nbytes : 1); }
  void free(void* p) const { host.free(p); }
  void upload(void* dst, const void* src, uint64_t n) const { copy(dst, src, n); }
  void download(void* dst, const void* src, uint64_t n) const { copy(dst, src, n); }
  void synchronize() const {}
  bool supports(const xq_op& op) const {
    check_op(op);  // throws (answered as "no") what run would refuse
    return true;
  }
  void run(const xq_op& op) const {
    check_op(op);
    switch (op.type) {
      case XQ_OP_MATMUL: run_matmul(host, op); break;
      case XQ_OP_QMATMUL: run_qmatmul(host, op); break;
      case XQ_OP_DEQUANTIZE: run_dequantize(host, op); break;
      case XQ_OP_RMS_NORM: run_rms_norm(host, op); break;
      case XQ_OP_ROPE: run_rope(host, op); break;
      case XQ_OP_ATTENTION: run_attention(host, op); break;
      case XQ_OP_SWIGLU: run_swiglu(host, op); break;
      case XQ_OP_ADD: run_add_mul(host, op, false); break;
      case XQ_OP_MUL: run_add_mul(host, op, true); break;
      case XQ_OP_GET_ROWS: op.qweight ? run_blocks_get_rows(host, op) : run_get_rows(host, op); break;
      case XQ_OP_QUANTIZE_ACT: run_quantize_act(host, op); break;
      case XQ_OP_CONVERT: run_convert(host, op); break;
      case XQ_OP_ADD_RMS_NORM:  // device-path fusions: check_op refuses them on cpu
      case XQ_OP_ARGMAX: break;
      case XQ_OP_KV_WRITE: run_kv_write(host, op); break;
      case XQ_OP_PAGED_ATTENTION: run_paged_attention(host, op); break;
      case XQ_OP_MOE_ROUTE: run_moe_route(op); break;
      case XQ_OP_MOE_COMBINE: run_moe_combine(op); break;
      case XQ_OP_ROPE_KV: run_rope_kv(host, op); break;
    }
  }
  xq_qweight* prepare(const xq_quant_tensor& q) const { return prepare_qweight(q); }
  xq_qweight* prepare_blocks(const xq_block_tensor* parts, uint32_t n) const { return cpu::prepare_blocks(parts, n); }
  void moe_qmatmul(const xq_moe_op& op) const { run_moe_qmatmul(host, op); }
  void release(xq_qweight* w) const { delete w; }
  // Block weights whose every part runs from its interleaved copy (and its
  // copied tail rows) read nothing of the caller's after prepare
  // (gguf_blocks.cpp); adopted weights read the stored bytes in place; the
  // rest is packed here.
  bool borrows(const xq_qweight* w) const { return w->blocks ? blocks_borrow(*w->blocks) : w->adopted; }
  const char* layout(const xq_qweight* w) const {
    if (w && w->blocks) return w->blocks->layout;
    if (w && w->fp8) return "cpu-fp8-f32";
    return w && w->adopted ? "cpu-int8-group (stored, not repacked)" : "cpu-int8-group";
  }
  // Stored packed weights ("cpu.int-blocks.v1", e.g. from an xq file): read
  // in place after the layout's checks, never repacked.
  const char* packed_layout(const xq_quant_tensor& desc) const { return packed_layout_of(desc); }
  xq_qweight* adopt(const xq_quant_tensor& desc, const char* name, const void* data, uint64_t nbytes) const {
    if (std::strcmp(name, sdk::cpu_layout::kName) != 0)
      throw Error(XQ_ERR_UNSUPPORTED, sdk::format("cpu provider: layout '%s' is not %s", name, sdk::cpu_layout::kName));
    return adopt_qweight(desc, data, nbytes);
  }

 private:
  // Device memory is host memory: both directions are a copy.
  static void copy(void* dst, const void* src, uint64_t n) {
    if (n) std::memmove(dst, src, n);
  }
};

constexpr const char* kCapabilities[] = {
    "memory:host",       "op:matmul",       "op:qmatmul",      "op:dequantize",     "op:rms_norm",
    "op:rope",           "op:attention",    "op:swiglu",       "op:add",            "op:mul",
    "op:get_rows",       "op:quantize_act", "op:convert",      "op:kv_write",     "op:paged_attention", "op:moe_route", "op:moe_combine", "layout:cpu-int8-group", "bits:2-8",
    "blocks:ggml",
    "strategy:tensor", "strategy:channel", "strategy:group", "g_idx",       "act:none",
    "act:dynamic-token", "act:static-tensor", "layout:cpu-fp8-f32", "type:float", "act:fp8-dynamic-token", nullptr};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<CpuProvider>(
    XQ_PLUGIN_KERNEL_PROVIDER, "cpu", "1.0.0",
    "host CPU kernels: F32 ops (OpenBLAS SGEMM) and int8-code quantized GEMM (W2-8 A16, W8A8)", kCapabilities,
    nullptr, &sdk::KernelAdapter<CpuProvider>::vtable);

}  // namespace
}  // namespace xquant::cpu

XQ_SDK_ENTRY(xquant::cpu::kDescriptor)
