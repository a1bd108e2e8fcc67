// moe_routing.cpp: see moe_routing.hpp.
#include "engine/moe_routing.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace xquant {

MoeRouting moe_route(const float* logits, int64_t rows, int64_t n_experts, int64_t top_k, bool norm_topk_prob) {
  if (n_experts <= 0 || top_k <= 0 || top_k > n_experts)
    fail(XQ_ERR_INVALID_ARGUMENT, "MoE routing: top_k {} of {} experts", top_k, n_experts);
  MoeRouting r;
  r.rows = rows;
  r.top_k = top_k;
  r.expert.resize(static_cast<size_t>(rows * top_k));
  r.weight.resize(r.expert.size());
  std::vector<float> p(static_cast<size_t>(n_experts));
  std::vector<int32_t> order(static_cast<size_t>(n_experts));
  for (int64_t t = 0; t < rows; ++t) {
    const float* l = logits + t * n_experts;
    const float mx = *std::max_element(l, l + n_experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < n_experts; ++e) sum += p[e] = std::exp(l[e] - mx);
    for (auto& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int32_t a, int32_t b) {
      return p[a] > p[b] || (p[a] == p[b] && a < b);
    });
    float top_sum = 0.0f;
    for (int64_t k = 0; k < top_k; ++k) top_sum += p[order[k]];
    for (int64_t k = 0; k < top_k; ++k) {
      r.expert[t * top_k + k] = order[k];
      r.weight[t * top_k + k] = norm_topk_prob ? p[order[k]] / top_sum : p[order[k]];
    }
  }
  return r;
}

ExpertRows rows_per_expert(const MoeRouting& routing, int64_t n_experts) {
  ExpertRows out;
  out.rows.resize(static_cast<size_t>(n_experts));
  out.weight.resize(static_cast<size_t>(n_experts));
  for (int64_t t = 0; t < routing.rows; ++t)
    for (int64_t k = 0; k < routing.top_k; ++k) {
      const int32_t e = routing.expert[t * routing.top_k + k];
      if (e < 0 || e >= n_experts) fail(XQ_ERR_INTERNAL, "MoE routing chose expert {} of {}", e, n_experts);
      out.rows[e].push_back(t);
      out.weight[e].push_back(routing.weight[t * routing.top_k + k]);
    }
  return out;
}

}  // namespace xquant
