// moe_provider.cpp: the cuda provider's moe_qmatmul (xq_moe_op in
// abi/include/xquant/xq_kernel.h): validate, sort the routing slots by
// expert (moe_align), run every expert's GEMM in one launch over the
// sorted slots (W4A16 experts: w4_moe_gemm; dense BF16/F16 experts:
// moe_dense_gemm; W8A8 INT8 experts: a grouped CUTLASS GEMM, in
// moe_w8a8_provider.cpp), and, when router weights are given, combine each
// token's top-k rows. This is the fused-MoE scheme of vLLM's fused_moe
// (vllm/model_executor/layers/fused_moe/fused_moe.py). Every step is a kernel
// on the provider's stream sized from the shapes alone, so a decode step
// holding it can be recorded as a CUDA graph (graphs.cpp).
#include "moe_dense_gemm.hpp"
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
  if (!op.experts) return check_moe_dense(op);
  const xq_qweight* w0 = op.experts[0];
  if (w0 && w0->kind == xq_qweight::Kind::W8) return check_moe_w8a8(op);
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
  if (!is_2d_contiguous(op.x) || (op.x.dtype != XQ_DTYPE_BF16 && op.x.dtype != XQ_DTYPE_F16))
    refuse("takes contiguous 2-D BF16 or F16 activations x");
  check_moe_operands(op, w0->K, w0->N);
}

// Dense experts (xq_moe_op.dense_experts): [N, K] row-major in x's dtype,
// BF16 or F16, K a multiple of 8 and 16-byte aligned rows (the grouped
// GEMM's vector loads, moe_dense_gemm.cu).
void Provider::check_moe_dense(const xq_moe_op& op) {
  if (!XQ_HAS_FIELD(&op, xq_moe_op, dense_experts) || !op.dense_experts)
    invalid("has neither experts nor dense_experts");
  if (!is_2d_contiguous(op.x) || (op.x.dtype != XQ_DTYPE_BF16 && op.x.dtype != XQ_DTYPE_F16))
    refuse("takes dense experts with contiguous 2-D BF16 or F16 activations x only");
  if (op.dst.ndim != 2) invalid("dst must be 2-D");
  const int64_t K = op.x.shape[1], N = op.dst.shape[1];
  if (K % 8 != 0 || reinterpret_cast<uintptr_t>(op.x.data) % 16 != 0)
    refuse(format("takes dense experts with K a multiple of 8 and 16-byte aligned x (K = %lld)", (long long)K));
  for (uint32_t e = 0; e < op.n_experts; ++e)
    if (!op.dense_experts[e] || reinterpret_cast<uintptr_t>(op.dense_experts[e]) % 16 != 0)
      invalid(format("dense expert %u is NULL or not 16-byte aligned", e));
  check_moe_operands(op, K, N);
}

// The routing operands and shapes both kinds of experts share.
void Provider::check_moe_operands(const xq_moe_op& op, int64_t K, int64_t N) {
  const uint32_t k = op.top_k;
  if (!is_2d_contiguous(op.expert_ids) || op.expert_ids.dtype != XQ_DTYPE_I32 ||
      op.expert_ids.shape[1] != static_cast<int64_t>(k))
    invalid(format("expert_ids must be contiguous I32 [T, top_k = %u]", k));
  const int64_t T = op.expert_ids.shape[0];
  const int64_t slots = T * k;
  if (slots > INT32_MAX - 1) invalid("has more than 2^31 - 2 routing slots");
  if (op.x.shape[1] != K || (op.x.shape[0] != T && op.x.shape[0] != slots))
    invalid(format("x is [%lld, %lld]; expected [T = %lld or T * top_k = %lld, K = %lld]", (long long)op.x.shape[0],
                   (long long)op.x.shape[1], (long long)T, (long long)slots, (long long)K));
  const bool combine = op.weights.data != nullptr;
  if (combine && (!is_2d_contiguous(op.weights) || op.weights.dtype != XQ_DTYPE_F32 || op.weights.shape[0] != T ||
                  op.weights.shape[1] != static_cast<int64_t>(k)))
    invalid("weights must be contiguous F32 [T, top_k] like expert_ids");
  const int64_t rows = combine ? T : slots;
  if (!is_2d_contiguous(op.dst) || op.dst.dtype != op.x.dtype || op.dst.shape[0] != rows || op.dst.shape[1] != N)
    invalid(format("dst must be contiguous [%lld, %lld] of x's dtype (%s)", (long long)rows, (long long)N,
                   combine ? "one combined row per token" : "one row per routing slot"));
}

const void* const* Provider::moe_weight_table(const xq_moe_op& op, bool is_f16) {
  std::vector<const void*> ptrs(2 * static_cast<size_t>(op.n_experts));
  for (uint32_t e = 0; e < op.n_experts; ++e) {
    ptrs[e] = op.experts[e]->qw;
    ptrs[op.n_experts + e] = is_f16 ? op.experts[e]->sz_f16 : op.experts[e]->sz_bf16;
  }
  return moe_pointer_table(std::move(ptrs));
}

const void* const* Provider::moe_pointer_table(std::vector<const void*> ptrs) {
  auto it = moe_tables_.find(ptrs);
  if (it != moe_tables_.end()) return static_cast<const void* const*>(it->second);
  // Its upload is a host-to-device copy, which a stream capture cannot hold.
  // The engine runs a step eagerly before recording it, which makes the table.
  if (graphs_.recording) refuse("met a new expert set while recording a graph; run the step once eagerly first");
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
  // Recordable (graphs.cpp): everything below is a kernel on stream_, sized
  // from the shapes alone (the worst-case padded runs of moe_max_blocks), so
  // routing never comes back to the host; only a new expert table refuses.
  check_moe(op);
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (!op.experts) return moe_dense(op);
  if (op.experts[0]->kind == xq_qweight::Kind::W8) return moe_w8a8(op);
  if (moe_w4a16_grouped(op)) return;
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

// Dense experts: the same sorted runs, the grouped BF16/F16 GEMM
// (moe_dense_gemm.cu) into F32 rows when combining, then moe_combine.
void Provider::moe_dense(const xq_moe_op& op) {
  const int E = static_cast<int>(op.n_experts), k = static_cast<int>(op.top_k);
  const int64_t T = op.expert_ids.shape[0], slots = T * k, N = op.dst.shape[1], K = op.x.shape[1];
  if (T == 0) return;
  const bool is_f16 = op.x.dtype == XQ_DTYPE_F16;
  const DType act = is_f16 ? DType::F16 : DType::BF16;
  const int64_t x_div = op.x.shape[0] == slots ? 1 : k;
  const int mt = moe_dense_token_tiles((slots + E - 1) / E);
  const int block = mt * 16;
  const int64_t max_blocks = moe_max_blocks(slots, E, block);
  auto* sorted = static_cast<int32_t*>(s_moe_sorted_.get(static_cast<size_t>(max_blocks * block) * 4));
  auto* block_expert = static_cast<int32_t*>(s_moe_blocks_.get(static_cast<size_t>(max_blocks) * 4));
  XQ_MOE_CK(moe_align(static_cast<const int32_t*>(op.expert_ids.data), slots, E, block, sorted, block_expert,
                      stream_));
  const void* const* table = moe_pointer_table(std::vector<const void*>(op.dense_experts, op.dense_experts + E));
  const bool combine = op.weights.data != nullptr;
  void* y = combine ? s_moe_y_.get(static_cast<size_t>(slots * N) * 4) : op.dst.data;
  XQ_MOE_CK(moe_dense_gemm(mt, table, is_f16, op.x.data, x_div, K, N, sorted, block_expert, max_blocks, slots, y,
                           combine ? DType::F32 : act, stream_));
  if (combine)
    XQ_MOE_CK(moe_combine(static_cast<const float*>(y), static_cast<const float*>(op.weights.data),
                          static_cast<const int32_t*>(op.expert_ids.data), T, k, E, N, op.dst.data, act, stream_));
}

}  // namespace xqcuda
