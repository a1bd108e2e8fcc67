// moe_block_rows.hpp: a MoE layer's block input on AWQ's trial samples and
// its routing, computed once and shared by the down_proj groups of all the
// layer's experts (pipeline/group_forward.hpp: each expert's trial runs its
// own down_proj on its rows of this input). Running the attention half per
// expert instead would cost more than all the trials (Qwen3-30B-A3B: 128
// down_proj groups a layer).
//
// Valid while nothing that feeds the block changes: the attention weights,
// the post-attention norm, the router (the mlp_in group's rescaling). The
// experts' down_proj weights do not feed it.
#pragma once

#include "engine/model.hpp"
#include "pipeline/trial_samples.hpp"

#include <vector>

namespace xquant {

class MoeBlockRows {
 public:
  // layer_input: the layer's input hidden states (LayerStats::layer_input).
  MoeBlockRows(const Model& model, int layer, const float* layer_input, const TrialSamples& samples);

  int layer() const { return layer_; }
  int64_t rows() const { return rows_; }
  // [rows, hidden]: what the MoE block reads (the post-attention norm's
  // output after the model's input transform), the chosen samples in order.
  const std::vector<float>& input() const { return input_; }
  // Per expert, its rows of input() (ascending) and their combine weights.
  const ExpertRows& routed() const { return routed_; }

 private:
  int layer_ = 0;
  int64_t rows_ = 0;
  std::vector<float> input_;
  ExpertRows routed_;
};

}  // namespace xquant
