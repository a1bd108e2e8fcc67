// moe_qmatmul.cpp: the cpu provider's moe_qmatmul (xq_moe_op in
// abi/include/xquant/xq_kernel.h), by experts one at a time: gather the
// rows routed to an expert, one QMATMUL over them, scatter the results to
// their slots; then, with router weights, each token's weighted sum of its
// slots in slot order. The same result the engine's per-expert MoE layer
// (runtime/engine/moe_layer.cpp) computes, behind the entry a GPU provider
// runs as one fused launch.
#include "cpu.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace xquant::cpu {

namespace {

[[noreturn]] void invalid(const std::string& msg) {
  throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: moe_qmatmul " + msg);
}

bool f32_2d(const xq_device_tensor& t) {
  return present(t) && t.ndim == 2 && is_contiguous(t) && t.dtype == XQ_DTYPE_F32;
}

void check_moe(const xq_moe_op& op) {
  const uint32_t E = op.n_experts, k = op.top_k;
  if (E == 0) invalid("needs at least one expert");
  if (k == 0 || k > E) invalid(sdk::format("top_k %u outside [1, n_experts = %u]", k, E));
  if (!op.experts)  // dense experts: the engine's per-expert loop runs them here
    throw Error(XQ_ERR_UNSUPPORTED, "cpu provider: moe_qmatmul runs prepared (quantized) experts only");
  const xq_qweight* w0 = op.experts[0];
  for (uint32_t e = 0; e < E; ++e) {
    const xq_qweight* w = op.experts[e];
    if (!w) invalid(sdk::format("expert %u has no weight", e));
    if (w->rows != w0->rows || w->cols != w0->cols)
      invalid(sdk::format("expert %u is [%lld, %lld], expert 0 [%lld, %lld]: all experts must match", e,
                          (long long)w->rows, (long long)w->cols, (long long)w0->rows, (long long)w0->cols));
  }
  const xq_device_tensor& ids = op.expert_ids;
  if (!present(ids) || ids.ndim != 2 || !is_contiguous(ids) || ids.dtype != XQ_DTYPE_I32 ||
      ids.shape[1] != static_cast<int64_t>(k))
    invalid(sdk::format("expert_ids must be contiguous I32 [T, top_k = %u]", k));
  const int64_t T = ids.shape[0], S = T * k;
  if (!f32_2d(op.x) || op.x.shape[1] != w0->cols || (op.x.shape[0] != T && op.x.shape[0] != S))
    invalid(sdk::format("x must be contiguous F32 [T = %lld or T * top_k = %lld, K = %lld]", (long long)T,
                        (long long)S, (long long)w0->cols));
  const bool combine = present(op.weights);
  if (combine && (!f32_2d(op.weights) || op.weights.shape[0] != T || op.weights.shape[1] != static_cast<int64_t>(k)))
    invalid("weights must be contiguous F32 [T, top_k] like expert_ids");
  if (!f32_2d(op.dst) || op.dst.shape[0] != (combine ? T : S) || op.dst.shape[1] != w0->rows)
    invalid(sdk::format("dst must be contiguous F32 [%lld, %lld]", (long long)(combine ? T : S), (long long)w0->rows));
}

}  // namespace

void run_moe_qmatmul(const Host& host, const xq_moe_op& op) {
  check_moe(op);
  const int64_t k = op.top_k, T = op.expert_ids.shape[0], S = T * k;
  const int64_t K = op.experts[0]->cols, N = op.experts[0]->rows;
  const bool per_slot_x = op.x.shape[0] == S;
  const auto* ids = static_cast<const int32_t*>(op.expert_ids.data);
  const auto* x = static_cast<const float*>(op.x.data);
  const bool combine = present(op.weights);
  // Per-slot results: dst itself without weights, else a buffer combined below.
  std::vector<float> slot_rows(combine ? static_cast<size_t>(S * N) : 0);
  float* ys = combine ? slot_rows.data() : static_cast<float*>(op.dst.data);

  std::vector<std::vector<int64_t>> slots_of(op.n_experts);
  for (int64_t s = 0; s < S; ++s)
    if (ids[s] >= 0 && static_cast<uint32_t>(ids[s]) < op.n_experts) slots_of[ids[s]].push_back(s);
  std::vector<float> xe, ye;
  for (uint32_t e = 0; e < op.n_experts; ++e) {
    const std::vector<int64_t>& slots = slots_of[e];
    if (slots.empty()) continue;  // an expert no token chose costs nothing
    const int64_t n = static_cast<int64_t>(slots.size());
    xe.resize(static_cast<size_t>(n * K));
    ye.resize(static_cast<size_t>(n * N));
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&xe[i * K], x + (per_slot_x ? slots[i] : slots[i] / k) * K, K * sizeof(float));
    xq_op q = sdk::make_op(XQ_OP_QMATMUL);
    q.qweight = op.experts[e];
    q.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {n, K}, xe.data());
    q.dst = sdk::device_tensor(XQ_DTYPE_F32, {n, N}, ye.data());
    check_quant(q);
    run_qmatmul(host, q);
    for (int64_t i = 0; i < n; ++i) std::memcpy(ys + slots[i] * N, &ye[i * N], N * sizeof(float));
  }
  if (!combine) return;
  const auto* w = static_cast<const float*>(op.weights.data);
  auto* dst = static_cast<float*>(op.dst.data);
  for (int64_t t = 0; t < T; ++t) {
    float* row = dst + t * N;
    std::fill(row, row + N, 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t s = t * k + j;
      if (ids[s] < 0 || static_cast<uint32_t>(ids[s]) >= op.n_experts) continue;
      for (int64_t c = 0; c < N; ++c) row[c] += w[s] * ys[s * N + c];
    }
  }
}

}  // namespace xquant::cpu
