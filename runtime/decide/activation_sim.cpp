// activation_sim.cpp: see activation_sim.hpp.
#include "decide/activation_sim.hpp"

#include <xquant/sdk/quantizer.hpp>

#include <algorithm>
#include <cmath>

namespace xquant::decide {

void fake_quantize_inputs(float* x, int64_t rows, int64_t cols, ActivationMode mode, float static_scale,
                          const float* divisor) {
  if (mode == ActivationMode::Float) return;
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    for (int64_t j = 0; j < cols; ++j) row[j] = divisor ? xr[j] / divisor[j] : xr[j];
    float s = static_scale, lo = -128.0f;
    if (mode == ActivationMode::DynamicToken) {
      float amax = 0;
      for (float v : row) amax = std::max(amax, std::fabs(v));
      s = amax > 0 ? amax / 127.0f : 1.0f;
      lo = -127.0f;
    }
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < cols; ++j) {
      const float q = std::min(127.0f, std::max(lo, std::nearbyint(row[j] * inv)));
      xr[j] = divisor ? q * s * divisor[j] : q * s;
    }
  }
}

ActivationSimulation::ActivationSimulation(Model& model, const std::vector<GroupProfile>& groups)
    : model_(model), groups_(groups) {
  for (const auto& g : groups_) state_[{g.layer, g.group}] = State{};
  model_.set_input_transform([this](int layer, int group, float* x, int64_t rows, int64_t cols) {
    auto it = state_.find({layer, group});
    if (it == state_.end() || it->second.mode == ActivationMode::Float) return;
    const State& s = it->second;
    fake_quantize_inputs(x, rows, cols, s.mode, s.static_scale,
                         s.divisor && !s.divisor->empty() ? s.divisor->data() : nullptr);
  });
}

ActivationSimulation::~ActivationSimulation() { model_.set_input_transform(nullptr); }

void ActivationSimulation::quantize(size_t i, int k, ActivationMode mode) {
  const GroupProfile& g = groups_[i];
  const CandidateResult& c = g.candidates[static_cast<size_t>(k)];
  State& s = state_[{g.layer, g.group}];
  s.mode = mode;
  s.divisor = &c.input_divisor;
  s.static_scale = sdk::quant::static_input_scale(g.input_absmax.data(),
                                                  c.input_divisor.empty() ? nullptr : c.input_divisor.data(),
                                                  static_cast<int64_t>(g.input_absmax.size()), 8, g.act_scale_dtype);
}

void ActivationSimulation::as_chosen(size_t i) {
  const GroupProfile& g = groups_[i];
  quantize(i, g.chosen, g.dynamic_activations ? ActivationMode::DynamicToken : ActivationMode::StaticTensor);
}

void ActivationSimulation::as_float(size_t i) { state_[{groups_[i].layer, groups_[i].group}] = State{}; }

void ActivationSimulation::all_float() {
  for (auto& [key, s] : state_) s = State{};
}

}  // namespace xquant::decide
