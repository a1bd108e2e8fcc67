// calibrator.hpp: layer-by-layer calibration capture for quantization
// algorithms (fills the ABI's xq_linear_stats, XQ_NEED_* bits).
//
// Usage:
//   ModelOptions mo; mo.dequantize_all = true;          // float weights to read/overwrite
//   auto model = Model::open(rt, path, mo);
//   auto samples = LayerwiseCalibrator::samples_from_text(*model, text, 128, 512, seed);
//   LayerwiseCalibrator cal(*model, samples);
//   cal.run(XQ_NEED_HESSIAN | XQ_NEED_ABSMAX, [&](int layer, LayerStats& st, LayerWeights& w) {
//     xq_linear_stats s = st.view(LayerDesc::kQ);      // q_proj's input stats
//     ... quantize w.linears[i].w in place (or write dequantized weights) ...
//   });
//
// How it runs (memory bounded by one layer): the hidden states of all
// samples at the current layer's input are kept (samples x seq_len x hidden
// floats). For layer L: every sample goes through L once while a tap
// accumulates statistics of each Linear group's input (q/k/v share one, so
// do gate/up); the callback gets them plus L's weights, mutable; then (with
// propagate_updated, the default) the samples go through L again with the
// weights as the callback left them, so layer L+1 sees the outputs of the
// quantized layer L: GPTQ's sequential propagation. Without it the first
// pass's outputs are kept (one pass per layer, the float model's inputs).
#pragma once

#include "calibrate/moe_calibration.hpp"
#include "engine/model.hpp"

#include <xquant/xq_algorithm.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace xquant {

// Statistics of one Linear group's input (cols = input width).
struct InputStats {
  int64_t cols = 0;
  uint64_t tokens = 0;
  std::vector<float> absmax;    // [cols] max |x|           (XQ_NEED_ABSMAX)
  std::vector<float> mean_abs;  // [cols] mean |x|          (XQ_NEED_MEAN_ABS)
  std::vector<float> sum_sq;    // [cols] sum x^2 (imatrix) (XQ_NEED_SUM_SQ)
  std::vector<float> hessian;   // [cols*cols] X^T X        (XQ_NEED_HESSIAN)
  std::vector<float> samples;   // [n_samples*cols] rows    (XQ_NEED_SAMPLES)
  int64_t n_samples = 0;
  // The ABI view; pointers are NULL for statistics not requested. Valid
  // while this object lives and is not modified.
  xq_linear_stats view() const;
};

// How one expert of a MoE layer was calibrated (see CalibrationOptions::moe).
struct ExpertCalibration {
  int layer = 0, expert = 0;
  uint64_t routed_tokens = 0;  // calibration tokens the router sent to it
  bool all_tokens = false;     // its statistics come from every token
  std::string why;             // "", "calibrate_all_experts", "fewer than N routed tokens"
};

struct LayerStats {
  int layer = 0;
  const LayerDesc* desc = nullptr;
  std::vector<InputStats> groups;  // LayerDesc::groups order
  // Per group, the group whose statistics stand for it (itself, or for a
  // MoE expert on all-token statistics, mlp_in).
  std::vector<int> stats_source;
  // MoE layers: one entry per expert once its gate/up stage ran (in the
  // chunked gate/up callbacks: the experts of the chunk).
  std::vector<ExpertCalibration> experts;
  // MoE layers: the experts whose gate/up statistics this callback holds,
  // [experts_begin, experts_end). The sequential gate/up stage calls back
  // for mlp_in once per chunk of MoeCalibration::experts_per_pass experts
  // (the router and shared expert come with the first chunk); every other
  // callback covers all experts.
  int64_t experts_begin = 0, experts_end = 0;
  // With CalibrationOptions::sequential_groups: the one group whose stats
  // are filled in this callback (groups run in LayerDesc order, each seeing
  // the earlier groups' weights as the callback left them); -1 = all.
  int active_group = -1;
  // The layer's input hidden states for every sample ([offsets.back(),
  // hidden] rows; sample s is rows offsets[s]..offsets[s+1]), so a callback
  // can re-run the layer (AWQ's loss) with Model::layer_forward.
  const float* layer_input = nullptr;
  const std::vector<int64_t>* offsets = nullptr;
  // Stats of the input of linear `linear` (LayerDesc::linears index): its
  // statistics-only group's when it has one (a MoE expert's routed
  // tokens), else its quantization group's.
  const InputStats& for_linear(int linear) const;
  xq_linear_stats view(int linear) const { return for_linear(linear).view(); }
};

// The layer's weights as the engine runs them: float vectors the callback
// may overwrite in place (sizes must not change).
using LayerWeightsMutable = LayerWeights;

struct CalibrationOptions {
  MoeCalibration moe;
  int64_t max_sample_rows = 512;  // XQ_NEED_SAMPLES: reservoir size per group
  uint64_t seed = 0;              // reservoir sampling
  bool propagate_updated = true;  // re-run layer L with the callback's weights
  // GPTQ's true-sequential order: one pass and one callback per Linear group
  // (q/k/v, o, gate/up, down), each group's inputs computed with the
  // earlier groups' weights already updated. Implies propagate_updated.
  bool sequential_groups = false;
  // Resuming a run (pipeline/resume_checkpoint.hpp): start at layer
  // `first_layer` with `first_input` as its input hidden states (all
  // samples, as an earlier run's after_layer saw them; moved from) instead
  // of the embeddings. Requires propagation.
  int first_layer = 0;
  std::vector<float>* first_input = nullptr;
  // Called once layer l is done and the next layer's inputs (all samples,
  // [total tokens, hidden]) are computed.
  std::function<void(int layer, const std::vector<float>& next_input)> after_layer;
};

class RoutedExpertInputs;
struct StatisticsAccumulator;

class LayerwiseCalibrator {
 public:
  using Callback = std::function<void(int layer, LayerStats& stats, LayerWeightsMutable& weights)>;

  // `samples`: token sequences (each non-empty; run independently from position 0).
  LayerwiseCalibrator(Model& model, std::vector<std::vector<int32_t>> samples);

  // Walks all layers in order. Throws when a Linear of the model is held
  // quantized by the provider (open the model with dequantize_all).
  void run(uint32_t needs, const Callback& callback, const CalibrationOptions& options = {});

  // GPTQ-style sampling: the text is tokenized once (BOS first), then
  // n_samples windows of seq_len tokens start at uniformly random offsets
  // (std::mt19937_64(seed)). A text shorter than seq_len gives one window.
  // The most bytes of statistics held at once during run(): every group's
  // accumulated InputStats vectors, plus a MoE layer's kept gate/up input
  // (routed_expert_inputs.hpp). What MoeCalibration::experts_per_pass bounds.
  uint64_t peak_statistics_bytes() const { return peak_statistics_bytes_; }

  static std::vector<std::vector<int32_t>> samples_from_text(Model& model, const std::string& text, int64_t n_samples,
                                                             int64_t seq_len, uint64_t seed);

 private:
  // The first layer's input: the embeddings, or options.first_input.
  std::vector<float> first_hidden_states(const std::vector<int64_t>& offset, const CalibrationOptions& options,
                                         bool propagate) const;

  void init_accumulator(StatisticsAccumulator& acc, LayerStats& stats, int layer, size_t g, uint32_t needs,
                        const CalibrationOptions& options) const;
  void note_held_bytes(uint64_t bytes);
  // A MoE layer's gate/up stage after its pass: each chunk of experts'
  // statistics accumulated from `routed`, the fallback rule applied, the
  // mlp_in callback run for the chunk, its statistics freed. Returns every
  // expert's calibration.
  std::vector<ExpertCalibration> calibrate_experts_in_chunks(int layer, uint32_t needs, const RoutedExpertInputs& routed,
                                                             LayerStats& stats, const Callback& callback,
                                                             const CalibrationOptions& options);

  Model& model_;
  std::vector<std::vector<int32_t>> samples_;
  uint64_t peak_statistics_bytes_ = 0;
};

}  // namespace xquant
