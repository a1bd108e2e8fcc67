#include "pipeline/prev_op.hpp"

#include <cmath>

namespace xquant {

PrevOp prev_op_of(const LayerDesc& desc, LayerWeights& lw, int group) {
  PrevOp p;
  const LinearGroupDesc& g = desc.groups.at(static_cast<size_t>(group));
  if (group == LayerDesc::kAttnIn) {
    p.values = &lw.input_norm;
  } else if (group == LayerDesc::kMlpIn) {
    p.values = &lw.post_norm;
  } else if (g.prev_linear >= 0) {
    const int prev = g.prev_linear;
    const int self = g.linears.front();
    auto& w = lw.linears[static_cast<size_t>(prev)];
    if (w.desc->out == desc.linears[static_cast<size_t>(self)].in && w.bias.empty()) {
      p.values = &w.w;
      p.rows = w.desc->out;
      p.cols = w.desc->in;
    }
  }
  return p;
}

std::vector<float> input_divisors(const PrevOp& prev, const std::vector<float>& before, int64_t cols) {
  std::vector<float> divisor;
  if (!prev.values || *prev.values == before) return divisor;
  const std::vector<float>& after = *prev.values;
  divisor.assign(static_cast<size_t>(cols), 1.0f);
  for (int64_t j = 0; j < cols; ++j) {
    size_t at = static_cast<size_t>(j);
    if (prev.cols) {  // row j of the previous Linear
      at = static_cast<size_t>(j * prev.cols);
      for (int64_t c = j * prev.cols; c < (j + 1) * prev.cols; ++c)
        if (std::fabs(before[static_cast<size_t>(c)]) > std::fabs(before[at])) at = static_cast<size_t>(c);
    }
    if (before[at] != 0.0f && after[at] != 0.0f) divisor[static_cast<size_t>(j)] = std::fabs(before[at] / after[at]);
  }
  return divisor;
}

}  // namespace xquant
