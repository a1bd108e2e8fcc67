// prev_op.hpp: the op feeding a Linear group that an algorithm may rescale
// (AWQ and SmoothQuant fold their per-channel scales into it), and how much
// such a rescale shrank each input column. Shared by the calibrated runner,
// which hands the op to the algorithm and folds the change into what it
// writes, and by the decision engine, which replays candidates the same way.
#pragma once

#include "engine/model.hpp"
#include "checkpoint/architecture.hpp"

#include <vector>

namespace xquant {

// The norm for q/k/v and gate/up (a MoE layer's mlp_in: router and every
// expert's gate/up); the group's prev_linear (v_proj for o, up_proj for
// down, an expert's up_proj for its down_proj), only
// when the shapes line up and there is no bias (AWQ's rule, llm-awq
// awq/quantize/auto_scale.py auto_scale_block). `values` is NULL when there
// is none.
struct PrevOp {
  std::vector<float>* values = nullptr;
  int64_t rows = 0, cols = 0;  // cols 0: a 1-D norm
};

PrevOp prev_op_of(const LayerDesc& desc, LayerWeights& lw, int group);

// Per input column j of a group, d_j with x'_j = x_j / d_j after the
// algorithm rescaled the feeding op, from the op's values before and after:
// a norm's weight directly; a Linear's output row j through its largest
// element (one rounding away from exact). Empty when nothing changed.
std::vector<float> input_divisors(const PrevOp& prev, const std::vector<float>& before, int64_t cols);

}  // namespace xquant
