// activation_sim.hpp: W8A8 activations simulated on the evaluation forward.
// The decision engine swaps candidate weights into the float model; with a
// W8A8 request the inputs of a quantized group must be quantized too, or the
// static/dynamic choice cannot be measured. Installed as the model's input
// transform (Model::set_input_transform), it fake-quantizes each group's
// input as the cpu provider's W8A8 kernel quantizes it
// (plugins/cpu/src/dense_ops.cpp quantize_row_i8): static per tensor with
// the runner's scale (sdk::quant::static_input_scale over the calibration
// max |x|, codes -128..127), or dynamic per token (row max |x| / 127, codes
// -127..127). An algorithm that rescales the group's input (SmoothQuant,
// AWQ) quantizes x / d in the written model, so the simulation does too
// and multiplies d back (the candidate weights are kept in x's coordinates).
#pragma once

#include "decide/profile.hpp"
#include "engine/model.hpp"

#include <map>
#include <utility>
#include <vector>

namespace xquant::decide {

enum class ActivationMode { Float, StaticTensor, DynamicToken };

// In place: x [rows, cols] -> dequantized int8 codes. `divisor` (cols
// values) or nullptr; `static_scale` used for StaticTensor.
void fake_quantize_inputs(float* x, int64_t rows, int64_t cols, ActivationMode mode, float static_scale,
                          const float* divisor);

class ActivationSimulation {
 public:
  // Installs itself on `model` with every group's inputs float; removes
  // itself on destruction.
  ActivationSimulation(Model& model, const std::vector<GroupProfile>& groups);
  ~ActivationSimulation();
  ActivationSimulation(const ActivationSimulation&) = delete;
  ActivationSimulation& operator=(const ActivationSimulation&) = delete;

  // Group `i`'s inputs quantized as candidate `k` runs them, in `mode`.
  void quantize(size_t i, int k, ActivationMode mode);
  // As the decision stands: the group's chosen candidate, in its mode
  // (dynamic when dynamic_activations, else static).
  void as_chosen(size_t i);
  void as_float(size_t i);
  void all_float();

 private:
  struct State {
    ActivationMode mode = ActivationMode::Float;
    float static_scale = 0;
    const std::vector<float>* divisor = nullptr;
  };
  Model& model_;
  const std::vector<GroupProfile>& groups_;
  std::map<std::pair<int, int>, State> state_;  // (layer, group kind)
};

}  // namespace xquant::decide
