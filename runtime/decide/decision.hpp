// decision.hpp: `algorithm: auto`, end to end (docs/decide.md):
//   profile   every covered Linear group on the calibration text: activation
//             statistics, each candidate algorithm's Hessian-weighted output
//             error, the choice (lowest error) and why (profile.hpp);
//   evaluate  with an `accuracy:` section, on held-out text against the float
//             model: each fixed candidate and `auto` simulated in the float
//             model, the measured sensitivity of every group, its Spearman rho
//             against the proxy (evaluator.hpp, fallback.hpp);
//   fall back the most damaging groups up the ladder until the target holds;
//   write     the mixed-precision checkpoint through the ordinary runner
//             (one rule per algorithm and rung, dense groups ignored), then
//             evaluate what was written;
//   report    JSON + self-contained HTML (report.hpp).
#pragma once

#include "core/runtime.hpp"
#include "decide/evaluator.hpp"
#include "decide/fallback.hpp"
#include "decide/profile.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"

#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace xquant::decide {

struct VariantRow {
  std::string name;    // rtn, gptq, awq, auto, auto+fallback
  std::string source;  // "simulated" (weights swapped into the float model) | "written" (the checkpoint reloaded)
  uint64_t bytes = 0;  // weight bytes of the covered Linears (written: the checkpoint's files)
  Accuracy accuracy;
};

struct Timings {
  double profile = 0, evaluate = 0, sensitivity = 0, fallback = 0, write = 0, total = 0;
  double gptq_algorithm = 0;  // seconds inside the gptq candidate, summed over groups
};

struct Decision {
  std::string model, calibration_text, evaluation_text, overlap;
  std::string scheme;  // the rule's, e.g. "int4 sym group128"
  int bits = 4;
  std::vector<std::string> candidates;
  AccuracySpec accuracy;
  Accuracy reference;
  uint64_t eval_tokens = 0;
  std::vector<GroupProfile> groups;
  std::vector<Sensitivity> sensitivity;
  double spearman_rho = 0;
  // The int8 rung's sensitivity scaled from rung 0 against the measurement
  // (measured only with compare_baseline); NaN when not measured.
  double scaled_rho = std::numeric_limits<double>::quiet_NaN();
  Accuracy auto_on_subset;       // the chosen configuration on the ranking subset
  size_t evaluations_reused = 0;  // fallback evaluations answered from the memo
  uint64_t layer_tokens_evaluated = 0;  // token x layer passes of every held-out evaluation (their cost)
  std::vector<std::string> ladder;
  FallbackResult fallback;                      // the one written
  std::vector<FallbackResult> fallback_methods;  // knapsack, greedy, weight-error (the baseline)
  std::vector<VariantRow> variants;
  std::vector<std::string> rules_written;  // the concrete pipeline, one line per rule
  std::vector<std::string> dense_groups;
  std::filesystem::path output;
  bool written = false;
  Timings seconds;
  std::vector<std::string> notes;
  // Kept for writing: the validated candidate rules, the int8 rung's rule,
  // and (with an accuracy section) the float model and its evaluator.
  std::vector<QuantRule> candidate_rules;
  QuantRule int8_rule;
  std::shared_ptr<Model> float_model;
  std::shared_ptr<HeldOutEvaluator> evaluator;
};

// Runs an `auto` pipeline (Pipeline::has_automatic_rule). With
// explain_only the decision is printed and nothing is written.
RunReport run_automatic(Runtime& runtime, Pipeline& pipeline);

// How the decision saves evaluations. With shortcuts (the default) a
// whole-set evaluation of a configuration already scored on the subset runs
// only the other windows, and a fallback method that can no longer be the
// one written stops on the subset (fallback.hpp, EvaluationMemo); the
// decision is the same either way (tests/decide/test_evaluation_reuse.cpp).
struct DecideOptions {
  bool shortcuts = true;
};

// The decision without writing (the engine's first four steps); the tests
// call this.
Decision decide(Runtime& runtime, const Pipeline& pipeline, const DecideOptions& options = {});

}  // namespace xquant::decide
