// moe_ops.cpp: the Mixture-of-Experts routing and combine ops of the `cpu`
// provider, MOE_ROUTE and MOE_COMBINE (contracts in
// abi/include/xquant/xq_kernel.h). The engine's host path routes with
// runtime/engine/moe_routing.cpp; these are the same arithmetic behind the
// op interface the device engine calls, so both providers answer it.
// Routing follows transformers' Qwen3MoeTopKRouter (modeling_qwen3_moe.py):
// softmax in F32, torch.topk (descending, the lower id first on ties), the
// top-k renormalised when norm_topk_prob.
#include "cpu.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace xquant::cpu {

using sdk::format;

namespace {

[[noreturn]] void reject(const char* name, const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: %s: %s", name, why.c_str()));
}

bool is_2d(const xq_device_tensor& t, xq_dtype dt) {
  return present(t) && t.ndim == 2 && t.dtype == dt && is_contiguous(t) && t.shape[0] >= 0 && t.shape[1] > 0;
}

}  // namespace

bool is_moe_op(xq_op_type t) { return t == XQ_OP_MOE_ROUTE || t == XQ_OP_MOE_COMBINE; }

void check_moe_op(const xq_op& op) {
  const auto& d = op.dst;
  const auto* s = op.src;
  if (op.type == XQ_OP_MOE_ROUTE) {
    const char* n = "MOE_ROUTE";
    if (!is_2d(s[0], XQ_DTYPE_F32)) reject(n, "src[0] (router logits) must be contiguous F32 [T, E]");
    if (!is_2d(d, XQ_DTYPE_I32)) reject(n, "dst (expert ids) must be contiguous I32 [T, top_k]");
    if (!is_2d(s[1], XQ_DTYPE_F32)) reject(n, "src[1] (weights, written) must be contiguous F32 [T, top_k]");
    if (d.shape[0] != s[0].shape[0] || s[1].shape[0] != s[0].shape[0]) reject(n, "dst, src[0] and src[1] differ in T");
    if (s[1].shape[1] != d.shape[1]) reject(n, "src[1] must have dst's top_k columns");
    if (d.shape[1] > s[0].shape[1]) reject(n, format("top_k %lld exceeds the %lld experts", (long long)d.shape[1],
                                                      (long long)s[0].shape[1]));
    if (op.i[0] != 0 && op.i[0] != 1) reject(n, "i[0] (norm_topk_prob) must be 0 or 1");
    return;
  }
  const char* n = "MOE_COMBINE";
  if (!is_2d(d, XQ_DTYPE_F32)) reject(n, "dst must be contiguous F32 [T, N]");
  if (!is_2d(s[0], XQ_DTYPE_F32) || s[0].shape[1] != d.shape[1]) reject(n, "src[0] must be contiguous F32 [R, N]");
  if (!is_2d(s[1], XQ_DTYPE_F32) || s[1].shape[0] != d.shape[0]) reject(n, "src[1] (weights) must be F32 [T, k]");
  if (present(s[2]) && (s[2].dtype != XQ_DTYPE_I32 || !is_contiguous(s[2]) || numel(s[2]) != numel(s[1])))
    reject(n, "src[2] (row of each slot) must be contiguous I32 [T * k]");
  if (!present(s[2]) && s[0].shape[0] < numel(s[1])) reject(n, "src[0] must hold T * k rows when src[2] is absent");
  if (op.i[0] != 0 && op.i[0] != 1) reject(n, "i[0] (0 weights as given, 1 sigmoid) must be 0 or 1");
}

void run_moe_route(const xq_op& op) {
  const int64_t T = op.src[0].shape[0], E = op.src[0].shape[1], k = op.dst.shape[1];
  const auto* logits = static_cast<const float*>(op.src[0].data);
  auto* ids = static_cast<int32_t*>(op.dst.data);
  auto* w = static_cast<float*>(op.src[1].data);
  std::vector<float> p(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * E;
    const float mx = *std::max_element(l, l + E);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(l[e] - mx);
    for (auto& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float top = 0.0f;
    for (int64_t j = 0; j < k; ++j) top += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      ids[t * k + j] = order[j];
      w[t * k + j] = op.i[0] ? p[order[j]] / top : p[order[j]];
    }
  }
}

void run_moe_combine(const xq_op& op) {
  const int64_t T = op.dst.shape[0], N = op.dst.shape[1], k = op.src[1].shape[1], R = op.src[0].shape[0];
  auto* dst = static_cast<float*>(op.dst.data);
  const auto* y = static_cast<const float*>(op.src[0].data);
  const auto* w = static_cast<const float*>(op.src[1].data);
  const auto* where = static_cast<const int32_t*>(op.src[2].data);
  std::vector<float> acc(static_cast<size_t>(N));
  for (int64_t t = 0; t < T; ++t) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = where ? where[t * k + j] : t * k + j;
      if (r < 0) continue;
      if (r >= R) throw Error(XQ_ERR_INVALID_ARGUMENT, format("cpu provider: MOE_COMBINE: slot %lld names row %lld of %lld",
                                                              (long long)(t * k + j), (long long)r, (long long)R));
      const float g = op.i[0] ? 1.0f / (1.0f + std::exp(-w[t * k + j])) : w[t * k + j];
      for (int64_t c = 0; c < N; ++c) acc[c] += g * y[r * N + c];
    }
    for (int64_t c = 0; c < N; ++c) dst[t * N + c] += acc[c];
  }
}

}  // namespace xquant::cpu
