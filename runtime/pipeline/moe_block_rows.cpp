// moe_block_rows.cpp: see moe_block_rows.hpp.
#include "pipeline/moe_block_rows.hpp"

namespace xquant {

MoeBlockRows::MoeBlockRows(const Model& model, int layer, const float* layer_input, const TrialSamples& samples)
    : layer_(layer), rows_(samples.rows) {
  const Architecture& arch = model.arch();
  const int64_t H = arch.hidden;
  std::vector<float> kbuf(static_cast<size_t>(samples.longest * arch.n_kv_heads * arch.head_dim)), vbuf(kbuf.size());
  std::vector<float> x;
  input_.resize(static_cast<size_t>(rows_ * H));
  int64_t at = 0;
  for (size_t s = 0; s < samples.n_rows.size(); ++s) {
    const int64_t n = samples.n_rows[s];
    x.assign(layer_input + samples.first_row[s] * H, layer_input + (samples.first_row[s] + n) * H);
    model.layer_forward(layer, x.data(), n, {SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}}, nullptr,
                        LayerPart::Attention);
    model.mlp_input(layer, x.data(), n, input_.data() + at * H);
    at += n;
  }
  const MoeDesc& m = arch.layers[static_cast<size_t>(layer)].experts;
  routed_ = rows_per_expert(model.moe_routing(layer, input_.data(), rows_), m.n_experts);
}

}  // namespace xquant
