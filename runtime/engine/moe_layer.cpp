// moe_layer.cpp: the Mixture-of-Experts block of the engine (see
// checkpoint/architecture.hpp MoeDesc and model.hpp moe_forward).
//
// Grouped execution: the router's logits for all rows in one GEMM, the
// rows routed to each expert gathered into one matrix, that expert's
// gate/up/down run as one GEMM each over them (quantized experts through
// the provider's QMATMUL, as every Linear), and the weighted outputs
// scatter-added back per row; experts in ascending id order, as
// transformers' Qwen3MoeExperts.forward index_add_s them. The shared expert
// (Qwen2-MoE) runs over all rows, scaled by sigmoid(shared_expert_gate(x)).
#include "engine/model.hpp"

#include "core/error.hpp"

#include <cmath>
#include <cstring>

namespace xquant {

namespace {

void swiglu_inplace(const Kernels& k, float* g, const float* u, int64_t rows, int64_t cols) {
  xq_op op = Kernels::op(XQ_OP_SWIGLU);
  op.src[0] = f32({rows, cols}, g);
  op.src[1] = f32({rows, cols}, u);
  op.dst = op.src[0];
  k.run(op, "SWIGLU (expert)");
}

}  // namespace

MoeRouting Model::moe_routing(int layer, const float* h, int64_t rows) const {
  const LayerDesc& d = arch_.layers.at(static_cast<size_t>(layer));
  if (!d.moe) fail(XQ_ERR_INVALID_ARGUMENT, "layer {} has no Mixture-of-Experts block", layer);
  const MoeDesc& m = d.experts;
  std::vector<float> logits(static_cast<size_t>(rows * m.n_experts));
  linear(layers_[static_cast<size_t>(layer)].linears[static_cast<size_t>(m.router)], h, rows, logits.data(),
         "router (mlp.gate)");
  return moe_route(logits.data(), rows, m.n_experts, m.top_k, m.norm_topk_prob);
}

void Model::expert_down_input(int layer, int64_t expert, const float* x, int64_t rows, float* out) const {
  const LayerDesc& d = arch_.layers.at(static_cast<size_t>(layer));
  if (!d.moe) fail(XQ_ERR_INVALID_ARGUMENT, "layer {} has no Mixture-of-Experts block", layer);
  if (expert < 0 || expert >= d.experts.n_experts)
    fail(XQ_ERR_INVALID_ARGUMENT, "layer {} has {} experts; expert {} does not exist", layer, d.experts.n_experts,
         expert);
  const auto& linears = layers_[static_cast<size_t>(layer)].linears;
  std::vector<float> u(static_cast<size_t>(rows * d.experts.expert_intermediate));
  linear(linears[static_cast<size_t>(d.experts.gate[expert])], x, rows, out, "expert gate_proj");
  linear(linears[static_cast<size_t>(d.experts.up[expert])], x, rows, u.data(), "expert up_proj");
  swiglu_inplace(*kernels_, out, u.data(), rows, d.experts.expert_intermediate);
}

void Model::moe_forward(int layer, const float* h, int64_t rows, float* out, const GroupInputTap& tap,
                        bool down_inputs_only) const {
  if (on_device()) fail(XQ_ERR_UNSUPPORTED, "Mixture-of-Experts layers run on host-memory kernel providers only");
  const LayerDesc& d = arch_.layers.at(static_cast<size_t>(layer));
  const MoeDesc& m = d.experts;
  const LayerWeights& W = layers_[static_cast<size_t>(layer)];
  const int64_t H = arch_.hidden, I = m.expert_intermediate;
  auto lin = [&](int i) -> const LinearWeights& { return W.linears[static_cast<size_t>(i)]; };

  const ExpertRows routed = rows_per_expert(moe_routing(layer, h, rows), m.n_experts);
  if (!down_inputs_only) std::memset(out, 0, static_cast<size_t>(rows * H) * sizeof(float));
  std::vector<float> xe, g, u, y;
  for (int64_t e = 0; e < m.n_experts; ++e) {
    const auto& idx = routed.rows[static_cast<size_t>(e)];
    const auto n = static_cast<int64_t>(idx.size());
    const bool all_tokens = tap && static_cast<size_t>(e) < all_token_down_.size() && all_token_down_[e];
    if (all_tokens) {  // statistics only: this expert's down_proj input over every row
      g.resize(static_cast<size_t>(rows * I));
      expert_down_input(layer, e, h, rows, g.data());
      tap(m.expert_out_group[e], g.data(), rows, I);
    }
    if (n == 0) continue;
    xe.resize(static_cast<size_t>(n * H));
    for (int64_t i = 0; i < n; ++i) std::memcpy(xe.data() + i * H, h + idx[i] * H, static_cast<size_t>(H) * sizeof(float));
    if (tap) tap(m.expert_in_group[e], xe.data(), n, H);
    g.resize(static_cast<size_t>(n * I));
    expert_down_input(layer, e, xe.data(), n, g.data());
    if (tap && !all_tokens) tap(m.expert_out_group[e], g.data(), n, I);
    if (down_inputs_only) continue;
    y.resize(static_cast<size_t>(n * H));
    linear(lin(m.down[e]), g.data(), n, y.data(), "expert down_proj");
    const auto& w = routed.weight[static_cast<size_t>(e)];
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + idx[i] * H;
      const float* yi = y.data() + i * H;
      for (int64_t c = 0; c < H; ++c) o[c] += w[i] * yi[c];
    }
  }
  if (m.shared_gate < 0) return;
  const int64_t S = m.shared_intermediate;
  g.resize(static_cast<size_t>(rows * S));
  u.resize(g.size());
  linear(lin(m.shared_gate), h, rows, g.data(), "shared_expert.gate_proj");
  linear(lin(m.shared_up), h, rows, u.data(), "shared_expert.up_proj");
  swiglu_inplace(*kernels_, g.data(), u.data(), rows, S);
  if (tap) tap(m.shared_out_group, g.data(), rows, S);
  if (down_inputs_only) return;
  y.resize(static_cast<size_t>(rows * H));
  linear(lin(m.shared_down), g.data(), rows, y.data(), "shared_expert.down_proj");
  std::vector<float> gate(static_cast<size_t>(rows));
  linear(lin(m.shared_expert_gate), h, rows, gate.data(), "shared_expert_gate");
  for (int64_t t = 0; t < rows; ++t) {
    const float s = 1.0f / (1.0f + std::exp(-gate[t]));
    for (int64_t c = 0; c < H; ++c) out[t * H + c] += s * y[t * H + c];
  }
}

}  // namespace xquant
