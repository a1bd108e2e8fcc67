// moe_provider.cpp: the cuda provider's moe_qmatmul (xq_moe_op in
// abi/include/xquant/xq_kernel.h): validate, sort the routing slots by
// expert (moe_align), run every expert's W4A16 GEMM in one launch over the
// sorted slots, and, when router weights are given, combine each token's
// top-k rows. This is the fused-MoE scheme of vLLM's fused_moe
// (vllm/model_executor/layers/fused_moe/fused_moe.py) on our W4A16 kernel.
#include "provider.hpp"

#include <cuda_runtime.h>

#include <algorithm>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

#define XQ_MOE_CK(expr)                                                                               \
  do {                                                                                                \
    cudaError_t _e = (expr);                                                                          \
    if (_e != cudaSuccess)                                                                            \
      throw Error(XQ_ERR_DEVICE, format("cuda: %s failed: %s", #expr, cudaGetErrorString(_e)));      \
  } while (0)

namespace {



bool is_2d_contiguous(const xq_device_tensor& t) {
  return t.ndim == 2 && t.data && xquant::sdk::is_contiguous(t);
}

[[noreturn]] void refuse(const std::string& msg) { throw Error(XQ_ERR_UNSUPPORTED, "cuda: moe_qmatmul " + msg); }
[[noreturn]] void invalid(const std::string& msg) {
  throw Error(XQ_ERR_INVALID_ARGUMENT, "cuda: moe_qmatmul " + msg);
}

}  // namespace

void Provider::check_moe(const xq_moe_op& op) {
  require_device();
  const uint32_t E = op.n_experts, k = op.top_k;
  if (E == 0 || static_cast<int>(E) > kMoeMaxExperts)
    invalid(format("needs 1..%d experts, got %u", kMoeMaxExperts, E));
  if (k == 0 || k > E) invalid(format("top_k %u outside [1, n_experts = %u]", k, E));
  const xq_qweight* w0 = op.experts[0];
  for (uint32_t e = 0; e < E; ++e) {
    const xq_qweight* w = op.experts[e];
    if (!w) invalid(format("expert %u has no weight", e));
    if (w->kind != xq_qweight::Kind::W4)
      refuse(format("runs %s experts only; expert %u is %s", kLayoutW4, e, w->layout));
    if (w->perm) refuse(format("takes no act-order experts (expert %u has a column permutation)", e));
    if (w->N != w0->N || w->K != w0->K || w->L.gs_shift != w0->L.gs_shift)
      invalid(format("expert %u is [%lld, %lld] g=2^%d, expert 0 [%lld, %lld] g=2^%d: all experts must match", e,
                     (long long)w->N, (long long)w->K, w->L.gs_shift, (long long)w0->N, (long long)w0->K,
                     w0->L.gs_shift));
  }
  if (!is_2d_contiguous(op.expert_ids) || op.expert_ids.dtype != XQ_DTYPE_I32 ||
      op.expert_ids.shape[1] != static_cast<int64_t>(k))
    invalid(format("expert_ids must be contiguous I32 [T, top_k = %u]", k));
  const int64_t T = op.expert_ids.shape[0];
  const int64_t slots = T * k;
  if (slots > INT32_MAX - 1) invalid("has more than 2^31 - 2 routing slots");
  if (!is_2d_contiguous(op.x) || (op.x.dtype != XQ_DTYPE_BF16 && op.x.dtype != XQ_DTYPE_F16))
    refuse("takes contiguous 2-D BF16 or F16 activations x");
  if (op.x.shape[1] != w0->K || (op.x.shape[0] != T && op.x.shape[0] != slots))
    invalid(format("x is [%lld, %lld]; expected [T = %lld or T * top_k = %lld, K = %lld]", (long long)op.x.shape[0],
                   (long long)op.x.shape[1], (long long)T, (long long)slots, (long long)w0->K));
  const bool combine = op.weights.data != nullptr;
  if (combine && (!is_2d_contiguous(op.weights) || op.weights.dtype != XQ_DTYPE_F32 || op.weights.shape[0] != T ||
                  op.weights.shape[1] != static_cast<int64_t>(k)))
    invalid("weights must be contiguous F32 [T, top_k] like expert_ids");
  const int64_t rows = combine ? T : slots;
  if (!is_2d_contiguous(op.dst) || op.dst.dtype != op.x.dtype || op.dst.shape[0] != rows ||
      op.dst.shape[1] != w0->N)
    invalid(format("dst must be contiguous [%lld, %lld] of x's dtype (%s)", (long long)rows, (long long)w0->N,
                   combine ? "one combined row per token" : "one row per routing slot"));
}

const void* const* Provider::moe_weight_table(const xq_moe_op& op, bool is_f16) {
  std::vector<const void*> ptrs(2 * static_cast<size_t>(op.n_experts));
  for (uint32_t e = 0; e < op.n_experts; ++e) {
    ptrs[e] = op.experts[e]->qw;
    ptrs[op.n_experts + e] = is_f16 ? op.experts[e]->sz_f16 : op.experts[e]->sz_bf16;
  }
  auto it = moe_tables_.find(ptrs);
  if (it != moe_tables_.end()) return static_cast<const void* const*>(it->second);
  void* table = nullptr;
  XQ_MOE_CK(cudaMalloc(&table, ptrs.size() * sizeof(void*)));
  const cudaError_t e = cudaMemcpy(table, ptrs.data(), ptrs.size() * sizeof(void*), cudaMemcpyHostToDevice);
  if (e != cudaSuccess) {
    cudaFree(table);
    XQ_MOE_CK(e);
  }
  moe_tables_.emplace(std::move(ptrs), table);
  return static_cast<const void* const*>(table);
}

void Provider::moe_qmatmul(const xq_moe_op& op) {
  // Its expert table upload and scratch growth cannot be recorded (graphs.cpp).
  refuse_while_recording("moe_qmatmul");
  check_moe(op);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const xq_qweight& w0 = *op.experts[0];
  const int E = static_cast<int>(op.n_experts), k = static_cast<int>(op.top_k);
  const int64_t T = op.expert_ids.shape[0], slots = T * k, N = w0.N, K = w0.K;
  if (T == 0) return;
  const bool is_f16 = op.x.dtype == XQ_DTYPE_F16;
  const DType act = is_f16 ? DType::F16 : DType::BF16;
  const int64_t x_div = op.x.shape[0] == slots ? 1 : k;  // [T, K]: slot s reads token s / top_k

  // Token block of the GEMM from the mean slots per expert (the kernel's
  // token-tile shapes), then the per-expert padded runs.
  const int mt = w4_moe_token_tiles((slots + E - 1) / E);
  const int block = mt * 8;
  const int64_t max_blocks = moe_max_blocks(slots, E, block);
  auto* sorted = static_cast<int32_t*>(s_moe_sorted_.get(static_cast<size_t>(max_blocks * block) * 4));
  auto* block_expert = static_cast<int32_t*>(s_moe_blocks_.get(static_cast<size_t>(max_blocks) * 4));
  XQ_MOE_CK(moe_align(static_cast<const int32_t*>(op.expert_ids.data), slots, E, block, sorted, block_expert,
                      stream_));

  // The kernel reads K_pad columns per row, 16-byte aligned, zero past K.
  const int64_t K_pad = w0.L.chunks * 64;
  const void* xs = op.x.data;
  int64_t ldx = K;
  if (K != K_pad || reinterpret_cast<uintptr_t>(op.x.data) % 16 != 0) {
    const int64_t rows = op.x.shape[0];
    void* buf = s_x_.get(static_cast<size_t>(rows * K_pad) * 2);
    XQ_MOE_CK(gather_columns(op.x.data, act, rows, K, K, nullptr, buf, K_pad, stream_));
    xs = buf;
    ldx = K_pad;
  }

  const void* const* table = moe_weight_table(op, is_f16);
  const auto* qw_table = reinterpret_cast<const uint4* const*>(table);
  const auto* sz_table = reinterpret_cast<const uint2* const*>(table + E);
  const bool combine = op.weights.data != nullptr;
  void* y = combine ? s_moe_y_.get(static_cast<size_t>(slots * N) * 4) : op.dst.data;
  XQ_MOE_CK(w4_moe_gemm(w0.L, mt, qw_table, sz_table, is_f16, xs, ldx, x_div, sorted, block_expert, max_blocks, slots,
                        y, combine ? DType::F32 : act, stream_));
  if (combine)
    XQ_MOE_CK(moe_combine(static_cast<const float*>(y), static_cast<const float*>(op.weights.data),
                          static_cast<const int32_t*>(op.expert_ids.data), T, k, E, N, op.dst.data, act, stream_));
}

}  // namespace xqcuda
