// moe_routing.hpp: top-k routing of a Mixture-of-Experts block, and the
// grouping of token rows by expert that the grouped expert GEMMs run on.
//
// Routing as transformers computes it (modeling_qwen3_moe.py
// Qwen3MoeTopKRouter, modeling_qwen2_moe.py, modeling_mixtral.py
// MixtralTopKRouter): p = softmax(router logits) in F32, the top_k largest
// p per row (torch.topk: descending; the lower expert id first on ties),
// divided by their sum when norm_topk_prob.
#pragma once

#include <cstdint>
#include <vector>

namespace xquant {

struct MoeRouting {
  int64_t rows = 0, top_k = 0;
  std::vector<int32_t> expert;  // [rows, top_k] expert ids, largest probability first
  std::vector<float> weight;    // [rows, top_k] their combine weights
};

// logits: [rows, n_experts] row-major.
MoeRouting moe_route(const float* logits, int64_t rows, int64_t n_experts, int64_t top_k, bool norm_topk_prob);

// For every expert, the rows routed to it (ascending) and their weights.
struct ExpertRows {
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::vector<float>> weight;
};
ExpertRows rows_per_expert(const MoeRouting& routing, int64_t n_experts);

}  // namespace xquant
