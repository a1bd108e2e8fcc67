// group_forward.hpp: the xq_group_forward callback a calibrated group gets:
// it reruns the whole decoder layer on a few calibration samples with
// candidate weights (AWQ's loss). For the MLP groups the change of the
// layer output equals the change of the module output (the residual
// carries the rest unchanged); for the attention groups it is the attention
// output's change as seen through the MLP (docs/algorithms.md). An MLP
// group's trial reruns only the layer's MLP half from the residual stream
// kept after the attention half (the attention half does not read the MLP
// weights; the halves give the whole layer bit for bit, Model::layer_forward).
#pragma once

#include "calibrate/calibrator.hpp"
#include "engine/model.hpp"

#include <xquant/xq_algorithm.h>

#include <vector>

namespace xquant {

class GroupForward {
 public:
  static constexpr int64_t kMaxRows = 512;  // samples are taken whole until this many rows

  // Group `group` of `layer`, its quantized members `linears` (LayerDesc
  // indices), on the first samples of `stats` (up to kMaxRows rows).
  GroupForward(Model& model, int layer, int group, const std::vector<int>& linears, const LayerStats& stats);
  GroupForward(const GroupForward&) = delete;
  GroupForward& operator=(const GroupForward&) = delete;

  // Valid while this object lives.
  xq_group_forward* abi() { return &abi_; }

 private:
  static xq_status run(void* ctx, const float* const* weights, float* out);
  void forward(const float* const* weights, float* out);
  // The group's own input rows for the chosen samples.
  void capture_group_input(int group);

  Model& model_;
  int layer_ = 0;
  std::vector<int> linears_;
  const float* layer_input_ = nullptr;  // all samples
  std::vector<int64_t> rows_of_sample_, first_row_;
  int64_t rows_ = 0;
  std::vector<float> input_;
  bool mlp_half_ = false;   // an MLP group: trials run the MLP half only
  std::vector<float> mid_;  // then: the residual stream after the attention half, the chosen samples' rows
  std::vector<float> kbuf_, vbuf_;
  xq_group_forward abi_{};
};

}  // namespace xquant
