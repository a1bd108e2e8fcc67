// xqc_shim.cpp: a tiny C shared library that lets the Python benchmark drive
// the *built plugin* (dlopen + vtable, the same path the engine takes) on
// raw device pointers owned by PyTorch, so our kernels and PyTorch's are
// timed in one process on the same (legacy default) stream.
#include <dlfcn.h>
#include <xquant/xq_kernel.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {
thread_local std::string g_err;
const xq_kernel_vtable* g_vt = nullptr;
void* g_state = nullptr;
xq_host_api g_host{};
std::string g_why;

xq_device_tensor t2(int dtype, int64_t r, int64_t c, void* p) {
  xq_device_tensor t{};
  t.struct_size = sizeof(t);
  t.dtype = static_cast<xq_dtype>(dtype);
  t.ndim = 2;
  t.shape[0] = r;
  t.shape[1] = c;
  t.data = p;
  return t;
}
xq_device_tensor t1(int dtype, int64_t n, void* p) {
  xq_device_tensor t = t2(dtype, n, 1, p);
  t.ndim = 1;
  t.shape[1] = 0;
  return t;
}
xq_op op0(xq_op_type type) {
  xq_op o{};
  o.struct_size = sizeof(o);
  o.type = type;
  return o;
}

// The weight-only description of canonical host arrays (group 0 = per-channel).
xq_quant_tensor weight_description(const int8_t* codes, const float* scales, const int8_t* zp, int64_t N, int64_t K,
                                   int64_t group, int bits) {
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = static_cast<uint32_t>(bits);
  q.symmetric = zp ? 0 : 1;
  q.strategy = group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = N;
  q.cols = K;
  q.group_size = group ? group : K;
  q.n_groups = group ? (K + group - 1) / group : 1;
  q.codes = const_cast<int8_t*>(codes);
  q.scales = const_cast<float*>(scales);
  q.zero_points = const_cast<int8_t*>(zp);
  q.scale_dtype = XQ_DTYPE_F32;
  return q;
}

void* prepared(const xq_quant_tensor& q) {
  xq_qweight* w = nullptr;
  if (g_vt->qweight_prepare(g_state, &q, &w) != XQ_OK) return nullptr;
  return w;
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) const char* xqc_last_error() { return g_err.c_str(); }
__attribute__((visibility("default"))) const char* xqc_why() { return g_why.c_str(); }

// Returns the provider's score (0 = unusable), -1 when loading failed.
__attribute__((visibility("default"))) int xqc_init(const char* plugin_path) {
  g_host.struct_size = sizeof(g_host);
  g_host.abi_version = XQ_ABI_VERSION;
  g_host.log = [](void*, xq_log_level, const char*) {};
  g_host.alloc = [](void*, size_t n) -> void* { return std::aligned_alloc(64, (n + 63) / 64 * 64); };
  g_host.free = [](void*, void* p) { std::free(p); };
  g_host.set_error = [](void*, xq_status s, const char* m) {
    g_err = m ? m : "";
    return s;
  };
  g_host.progress = [](void*, const char*, uint64_t, uint64_t) { return XQ_OK; };
  g_host.kv_get = [](void*, const xq_kv*, const char*, xq_value*) { return XQ_ERR_NOT_FOUND; };
  g_host.parallel_for = [](void*, uint64_t n, uint64_t, xq_range_fn fn, void* u) { fn(u, 0, n); };
  g_host.num_threads = [](void*) -> uint32_t { return 1; };
  void* lib = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    g_err = dlerror();
    return -1;
  }
  auto entry = reinterpret_cast<xq_plugin_entry_fn>(dlsym(lib, XQ_PLUGIN_ENTRY_SYMBOL));
  const xq_plugin_descriptor* d = entry ? entry(XQ_ABI_VERSION, XQ_ABI_VERSION) : nullptr;
  if (!d || d->init(&g_host, XQ_ABI_VERSION, &g_state) != XQ_OK) return -1;
  g_vt = static_cast<const xq_kernel_vtable*>(d->vtable);
  const char* why = nullptr;
  const int s = static_cast<int>(g_vt->score(g_state, &why));
  g_why = why ? why : "";
  return s;
}

// Canonical host arrays -> prepared weight. group 0 = per-channel.
// act: 0 = W4A16 (bits 4), 2 = W8A8 dynamic per-token, 1 = static.
// bits XQ_BITS_F8_E4M3 (3592): E4M3 codes with E4M3 activations (act 2).
__attribute__((visibility("default"))) void* xqc_prepare(const int8_t* codes, const float* scales, const int8_t* zp,
                                                         int64_t N, int64_t K, int64_t group, int bits, int act,
                                                         float input_scale) {
  xq_quant_tensor q = weight_description(codes, scales, zp, N, K, group, bits);
  q.act_scheme = static_cast<xq_act_scheme>(act);
  q.act_bits = act ? (bits == XQ_BITS_F8_E4M3 ? XQ_BITS_F8_E4M3 : 8) : 0;
  q.input_scale = input_scale;
  return prepared(q);
}

// The same with act-order (weight-only, groups of `group` > 0 columns):
// g_idx[K] gives each column's group (GPTQ desc_act; the provider sorts the
// columns by group and gathers x to match).
__attribute__((visibility("default"))) void* xqc_prepare_gidx(const int8_t* codes, const float* scales, const int8_t* zp,
                                                              const int32_t* g_idx, int64_t N, int64_t K, int64_t group,
                                                              int bits) {
  xq_quant_tensor q = weight_description(codes, scales, zp, N, K, group, bits);
  q.g_idx = const_cast<int32_t*>(g_idx);
  return prepared(q);
}

__attribute__((visibility("default"))) void xqc_release(void* w) {
  g_vt->qweight_release(g_state, static_cast<xq_qweight*>(w));
}

// y[M,N] = x[M,K] . W^T through QMATMUL. force: 0 auto, 1 fused, 2 dequant+GEMM, 3 Hopper wgmma.
__attribute__((visibility("default"))) int xqc_qmatmul(void* w, void* x, void* y, int64_t M, int64_t N, int64_t K,
                                                       int dtype, int out_dtype, int force) {
  xq_op o = op0(XQ_OP_QMATMUL);
  o.qweight = static_cast<xq_qweight*>(w);
  o.src[0] = t2(dtype, M, K, x);
  o.dst = t2(out_dtype, M, N, y);
  o.i[7] = force;
  return g_vt->run_op(g_state, &o);
}

// MATMUL with I8/F8/BF16 operands; vec: scales (device f32 [M+N]) else fx, fw.
__attribute__((visibility("default"))) int xqc_matmul(void* x, void* w, void* y, int64_t M, int64_t N, int64_t K,
                                                      int dtype, int out_dtype, int vec, void* scales, float fx,
                                                      float fw) {
  xq_op o = op0(XQ_OP_MATMUL);
  o.src[0] = t2(dtype, M, K, x);
  o.src[1] = t2(dtype, N, K, w);
  o.dst = t2(out_dtype, M, N, y);
  if (vec) {
    o.i[0] = 1;
    o.src[3] = t1(XQ_DTYPE_F32, M + N, scales);
  } else {
    o.f[0] = fx;
    o.f[1] = fw;
  }
  return g_vt->run_op(g_state, &o);
}

__attribute__((visibility("default"))) int xqc_quantize_act(void* x, void* q, void* scales, int64_t M, int64_t K,
                                                            int in_dtype, int out_dtype) {
  xq_op o = op0(XQ_OP_QUANTIZE_ACT);
  o.src[0] = t2(in_dtype, M, K, x);
  o.src[1] = t1(XQ_DTYPE_F32, M, scales);
  o.dst = t2(out_dtype, M, K, q);
  return g_vt->run_op(g_state, &o);
}

// One mixture-of-experts Linear over all experts (moe_qmatmul): x [x_rows, K]
// (x_rows = T: per token, or T * top_k: per slot), ids I32 [T, top_k],
// weights F32 [T, top_k] or null; y [T, N] with weights, else [T * top_k, N].
__attribute__((visibility("default"))) int xqc_moe_qmatmul(void* const* experts, int n_experts, int top_k, void* x,
                                                           int64_t x_rows, int64_t K, void* ids, int64_t T,
                                                           void* weights, void* y, int64_t N, int dtype) {
  if (g_vt->struct_size < offsetof(xq_kernel_vtable, moe_qmatmul) + sizeof(void*) || !g_vt->moe_qmatmul) {
    g_err = "this plugin has no moe_qmatmul";
    return XQ_ERR_UNSUPPORTED;
  }
  xq_moe_op o{};
  o.struct_size = sizeof(o);
  o.n_experts = static_cast<uint32_t>(n_experts);
  o.top_k = static_cast<uint32_t>(top_k);
  o.experts = reinterpret_cast<const xq_qweight* const*>(experts);
  o.x = t2(dtype, x_rows, K, x);
  o.expert_ids = t2(XQ_DTYPE_I32, T, top_k, ids);
  if (weights) o.weights = t2(XQ_DTYPE_F32, T, top_k, weights);
  o.dst = t2(dtype, weights ? T : T * top_k, N, y);
  return g_vt->moe_qmatmul(g_state, &o);
}

// The same with dense experts (xq_moe_op.dense_experts): dense[e] is expert
// e's [N, K] row-major weight in x's dtype on the device.
__attribute__((visibility("default"))) int xqc_moe_dense(void* const* dense, int n_experts, int top_k, void* x,
                                                         int64_t x_rows, int64_t K, void* ids, int64_t T,
                                                         void* weights, void* y, int64_t N, int dtype) {
  if (g_vt->struct_size < offsetof(xq_kernel_vtable, moe_qmatmul) + sizeof(void*) || !g_vt->moe_qmatmul) {
    g_err = "this plugin has no moe_qmatmul";
    return XQ_ERR_UNSUPPORTED;
  }
  xq_moe_op o{};
  o.struct_size = sizeof(o);
  o.n_experts = static_cast<uint32_t>(n_experts);
  o.top_k = static_cast<uint32_t>(top_k);
  o.dense_experts = const_cast<const void* const*>(dense);
  o.x = t2(dtype, x_rows, K, x);
  o.expert_ids = t2(XQ_DTYPE_I32, T, top_k, ids);
  if (weights) o.weights = t2(XQ_DTYPE_F32, T, top_k, weights);
  o.dst = t2(dtype, weights ? T : T * top_k, N, y);
  return g_vt->moe_qmatmul(g_state, &o);
}

__attribute__((visibility("default"))) int xqc_synchronize() { return g_vt->synchronize(g_state); }
}
