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

  // A part of `whole`: the windows given (indices into whole's windows, in
  // order), with whole's reference reused, no forward pass: each window is
  // evaluated from an empty cache, so the float model's outputs on it do not
  // depend on the others (bit for bit what a part built from the model with
  // the same tokens holds). `whole` must outlive it (evaluate_knowing).
  HeldOutEvaluator(const HeldOutEvaluator& whole, const std::vector<size_t>& windows);

  // Evaluates `model` (the reference itself with swapped weights, or
  // another model of the same vocabulary).
  Accuracy evaluate(Model& model) const;

  // Keeps the float model's hidden states at every layer's input and after
  // its attention half (positions x hidden x layers x 2 floats), so that a model differing from the float one
  // only from layer `first` on is evaluated from there: the layers before it
  // would give the float outputs again. The measured sensitivity evaluates
  // one group at a time, a few layers deep on average.
  void cache_layer_inputs(Model& reference);
  bool has_layer_inputs() const { return !layer_inputs_.empty(); }
  // = evaluate(model) when layers before `first` are the reference's
  // (falls back to evaluate() without the cache). With from_mlp the
  // attention half of `first` must be the reference's too: the run starts
  // at that layer's MLP half, from the residual stream cached there (the
  // attention is most of a small model's layer; an MLP group's sensitivity).
  Accuracy evaluate_from(Model& model, int first, bool from_mlp = false) const;
  // = evaluate(model) when `on_part` is `part`'s evaluation of the same
  // model (part built from this evaluator): only the other windows run, and
  // the sums are joined (equal up to the order of the additions).
  Accuracy evaluate_knowing(Model& model, const HeldOutEvaluator& part, const Accuracy& on_part) const;
  bool is_part_of(const HeldOutEvaluator& whole) const { return parent_ == &whole; }
  const Accuracy& reference_accuracy() const { return reference_; }
  uint64_t tokens() const { return tokens_.size(); }
  // Token x layer passes run so far (every evaluation's cost, counted; the
  // reference's own pass included).
  uint64_t layer_tokens_run() const { return layer_tokens_run_; }

 private:
  struct Sums {
    double nll = 0, kl = 0;
    uint64_t positions = 0;
  };
  // log softmax of every scored position of the windows `which` (indices
  // into windows()), window by window: [positions, vocab].
  std::vector<float> log_probs(Model& model, const std::vector<size_t>& which) const;
  std::vector<float> log_probs_from(Model& model, int first, bool from_mlp) const;
  // The sums over the windows `which`, `lq` holding their log-probabilities.
  Sums compare(const std::vector<float>& lq, const std::vector<size_t>& which) const;
  static Accuracy accuracy_of(const Sums& s);
  // (begin, length) of each window of at least 2 tokens.
  std::vector<std::pair<int64_t, int64_t>> windows() const;
  std::vector<size_t> all_windows() const;
  // Window i's first scored position in the [positions, vocab] arrays.
  static int64_t first_position(int64_t begin, size_t window) { return begin - static_cast<int64_t>(window); }

  std::vector<int32_t> tokens_;
  int64_t ctx_ = 0, vocab_ = 0;
  // The float model's next-token probabilities [positions, vocab] and
  // sum_v p log p per position, computed once: each comparison is then one
  // dot product with the quantized model's log-probabilities per position.
  std::vector<float> reference_probs_;
  std::vector<double> reference_p_log_p_;
  std::vector<float> reference_target_log_p_;  // per position: log p_float(next token)
  // A part (the constructor from a whole): the whole and its windows held.
  const HeldOutEvaluator* parent_ = nullptr;
  std::vector<size_t> parent_windows_;
  mutable uint64_t layer_tokens_run_ = 0;
  std::vector<std::vector<float>> layer_inputs_;  // [layer][token, hidden], windows concatenated
  std::vector<std::vector<float>> mlp_inputs_;    // the same after each layer's attention half
  Accuracy reference_;
};

// Spearman's rank correlation (average ranks for ties); 0 when undefined.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace xquant::decide
