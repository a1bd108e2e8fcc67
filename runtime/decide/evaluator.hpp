// evaluator.hpp: end-to-end accuracy of a (simulated or written) quantized
// model against the float model on held-out text: perplexity (the protocol
// of engine/evaluate.hpp: consecutive windows, each from an empty cache) and
// the mean KL divergence KL(P_float || P_quant) of the next-token
// distributions, the metric llama.cpp's `perplexity --kl-divergence` and
// ModelOpt report. The float model's log-probabilities are computed
// once (as probabilities and their negative entropy) and compared position
// by position.
#pragma once

#include "engine/model.hpp"

#include <cstdint>
#include <vector>

namespace xquant::decide {

struct Accuracy {
  double ppl = 0, mean_nll = 0, kld = 0;
  uint64_t positions = 0;
};

class HeldOutEvaluator {
 public:
  // `tokens` include the BOS (engine/evaluate.hpp eval_tokens); `reference`
  // is the float model the KL divergence is taken against.
  HeldOutEvaluator(Model& reference, std::vector<int32_t> tokens, int64_t ctx);

  // Evaluates `model` (the reference itself with swapped weights, or
  // another model of the same vocabulary).
  Accuracy evaluate(Model& model) const;

  // Keeps the float model's hidden states at every layer's input (positions
  // x hidden x layers floats), so that a model differing from the float one
  // only from layer `first` on is evaluated from there: the layers before it
  // would give the float outputs again. The measured sensitivity evaluates
  // one group at a time, a few layers deep on average.
  void cache_layer_inputs(Model& reference);
  bool has_layer_inputs() const { return !layer_inputs_.empty(); }
  // = evaluate(model) when layers before `first` are the reference's
  // (falls back to evaluate() without the cache).
  Accuracy evaluate_from(Model& model, int first) const;
  const Accuracy& reference_accuracy() const { return reference_; }
  uint64_t tokens() const { return tokens_.size(); }

 private:
  // log softmax of every scored position, window by window: [positions, vocab].
  std::vector<float> log_probs(Model& model) const;
  std::vector<float> log_probs_from(Model& model, int first) const;
  Accuracy compare(const std::vector<float>& lq) const;
  // (begin, length) of each window of at least 2 tokens.
  std::vector<std::pair<int64_t, int64_t>> windows() const;

  std::vector<int32_t> tokens_;
  int64_t ctx_ = 0, vocab_ = 0;
  // The float model's next-token probabilities [positions, vocab] and
  // sum_v p log p per position, computed once: each comparison is then one
  // dot product with the quantized model's log-probabilities per position.
  std::vector<float> reference_probs_;
  std::vector<double> reference_p_log_p_;
  std::vector<std::vector<float>> layer_inputs_;  // [layer][token, hidden], windows concatenated
  Accuracy reference_;
};

// Spearman's rank correlation (average ranks for ties); 0 when undefined.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace xquant::decide
