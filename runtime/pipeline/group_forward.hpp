// group_forward.hpp: the xq_group_forward callback a calibrated group gets:
// it reruns the module a group's weights feed on a few calibration samples
// with candidate weights (AWQ's loss). The module, by group:
//
// - attention groups: the whole decoder layer; the change of its output is
//   the attention output's change as seen through the MLP
//   (docs/algorithms.md).
// - MLP groups (a dense MLP; a MoE block's mlp_in and shared down_proj):
//   the layer's MLP half only, from the residual stream kept after the
//   attention half. The change of the layer output equals the change of the
//   module output (the residual carries the rest unchanged); the attention
//   half does not read the MLP weights, and the halves give the whole layer
//   bit for bit (Model::layer_forward).
// - a MoE expert's down_proj group: that expert's weighted output alone.
//   The block's output is sum_e w_e(t) expert_e(x_t); changing expert e's
//   down_proj changes only its term (the router, the other experts and the
//   residual are untouched), so the layer output changes by
//   w_e(t) (y_t W'^T - y_t W^T) on e's rows and not elsewhere. A trial runs
//   that one GEMM on e's rows, each scaled by its combine weight: the same
//   loss up to rounding, without rerunning the block (docs/algorithms.md,
//   "Mixture of experts"). The rows are e's routed rows among the chosen
//   samples; an expert whose statistics come from every token
//   (MoeCalibration's fallback), or that has no routed row among them, is
//   compared on every row with weight 1, as its statistics were taken.
#pragma once

#include "calibrate/calibrator.hpp"
#include "engine/model.hpp"
#include "pipeline/moe_block_rows.hpp"
#include "pipeline/trial_samples.hpp"

#include <xquant/xq_algorithm.h>

#include <memory>
#include <vector>

namespace xquant {

class GroupForward {
 public:
  static constexpr int64_t kMaxRows = 512;  // samples are taken whole until this many rows

  // Group `group` of `layer`, its quantized members `linears` (LayerDesc
  // indices), on the first samples of `stats` (up to kMaxRows rows). For a
  // MoE expert's down_proj group, `block` (when given: the layer's, on the
  // same samples, TrialSamples::choose(offsets, kMaxRows)) saves rerunning
  // the attention half; without it the forward computes its own.
  GroupForward(Model& model, int layer, int group, const std::vector<int>& linears, const LayerStats& stats,
               const MoeBlockRows* block = nullptr);
  GroupForward(const GroupForward&) = delete;
  GroupForward& operator=(const GroupForward&) = delete;

  // Valid while this object lives.
  xq_group_forward* abi() { return &abi_; }
  // The MoE expert whose down_proj the trials run alone; -1 for the other
  // modules.
  int expert() const { return expert_; }
  // The MoE expert whose down_proj group `group` of `desc` is, or -1.
  static int expert_of_down_group(const LayerDesc& desc, int group);

 private:
  enum class Module { Layer, MlpHalf, ExpertDown };
  class CandidatesInPlace;

  static xq_status run(void* ctx, const float* const* weights, float* out);
  void forward(const float* const* weights, float* out);
  void forward_expert_down(float* out) const;
  // The group's own input rows for the chosen samples (a MoE expert's
  // down_proj: with each row's combine weight).
  void capture_group_input(int group);
  void capture_expert_down_input(const MoeBlockRows& block, bool every_row);

  Model& model_;
  int layer_ = 0;
  std::vector<int> linears_;
  const float* layer_input_ = nullptr;  // all samples
  TrialSamples samples_;
  std::vector<float> input_;
  Module module_ = Module::Layer;
  std::vector<float> mid_;         // MlpHalf: the residual stream after the attention half, the chosen samples' rows
  int expert_ = -1;                // ExpertDown: the expert
  std::vector<float> row_weight_;  // ExpertDown: each input row's combine weight
  std::vector<float> kbuf_, vbuf_;
  xq_group_forward abi_{};
};

}  // namespace xquant
