// fallback.hpp: the layer-wise error analysis and the fallback ladder.
//
// Sensitivity, two ways per group: measured (the KL divergence of the
// float model with only that group quantized, everything else float) and
// the proxy (the chosen candidate's Hessian-weighted output error from the
// calibration pass, no evaluation needed). Fallback: start with every group
// at the rule's bits and climb an allocation path (budget.hpp: greedy by
// damage per byte, the knapsack, or the weight-error baseline) to the
// cheapest allocation that meets the accuracy target end to end.
#pragma once

#include "decide/activation_sim.hpp"
#include "decide/budget.hpp"
#include "decide/evaluator.hpp"
#include "decide/profile.hpp"

#include <limits>
#include <map>
#include <string>
#include <vector>

namespace xquant::decide {

// rung 0: the chosen candidate; then the ladder's entries in order.
enum class Rung { Chosen, Int8, Dense };
std::string rung_name(Rung r, int bits);

struct Sensitivity {
  // Per rung of the ladder: the KL divergence with only this group at that
  // rung, everything else float (dense: 0). Rung 0 is always measured. A
  // rung between (int8) is measured only with measure_every_rung; otherwise
  // it is rung 0's KLD scaled by the ratio of the two rungs' Hessian-weighted
  // output errors on the group's own calibration inputs (same inputs, same
  // downstream layers: for a small output perturbation the KLD is about a
  // quadratic form in it). On stories260K INT4 that estimate ranks like the
  // measurement, Spearman rho 0.99 (docs/results.md), and halves the cost.
  std::vector<double> kld;
  std::vector<bool> measured;  // per rung: kld measured (else the scaled estimate)
  std::vector<double> scaled;  // per rung: the scaled estimate (rung 0 and dense: = kld)
  double proxy = 0;            // chosen candidate's output error
};

struct FallbackStep {
  std::string moved;      // which groups sit above rung 0 (a summary; "" for the start)
  std::vector<int> rung;  // per group, index into the ladder
  uint64_t bytes = 0;     // weight bytes of the covered Linears
  uint64_t dense_bytes = 0;  // of those, the groups kept dense
  size_t path_index = 0;  // position on the method's allocation path
  Accuracy accuracy;
  // The target's metric against the float model on the same tokens: ppl
  // ratio - 1 (ppl target) or the KLD, comparable between the subset and
  // the whole set (their float perplexities differ).
  double excess = 0;
  bool meets = false;
};

// One method's search along its allocation path (budget.hpp): probes on the
// quick evaluator (a subset of the evaluation windows) bisect for the
// cheapest allocation meeting the target, which is then confirmed on the
// full evaluation set (moving further up the path while it misses there).
struct FallbackResult {
  std::string method;                       // greedy | knapsack | weight-error
  std::vector<Rung> ladder;                 // rung 0 first
  std::vector<int> rung_of_group;           // final, index into ladder
  std::vector<FallbackStep> probes;         // quick evaluations, by bytes (the curve)
  std::vector<FallbackStep> steps;          // full evaluations: the start, then confirmations, by bytes
  size_t path_length = 0;
  bool met = false;
  double target = 0;                        // on the metric's scale, full set
  std::string missed;                       // what is still off when !met
  // Non-empty: the search stopped on the subset, its cheapest allocation
  // there already taking more bytes than an earlier method's result
  // confirmed on every token (EvaluationMemo::settled_bytes); `met` is then
  // false and final_on_subset is that allocation, scored on the subset.
  std::string settled;
  FallbackStep final_on_subset;
};

uint64_t rung_bytes(const GroupProfile& g, Rung r);

// The sensitivity of every group at every rung but the last: rung 0
// measured, the rungs between measured too only with measure_every_rung
// (restores the float weights afterwards).
std::vector<Sensitivity> measure_sensitivity(Model& model, const std::vector<GroupProfile>& groups,
                                             const std::vector<Rung>& ladder, const HeldOutEvaluator& eval,
                                             bool measure_every_rung = false, ActivationSimulation* acts = nullptr);

// Spearman rho of the scaled estimate against the measurement over the
// rungs between 0 and dense that were measured; 0 when none were.
double scaled_estimate_rho(const std::vector<Sensitivity>& sensitivity);

// Evaluations already made, by allocation (each group's rung index), shared
// by the fallback methods: every path starts at the same allocation (all at
// rung 0, already scored while choosing) and ends at the same top, and the
// paths often cross between.
struct EvaluationMemo {
  std::map<std::vector<int>, Accuracy> quick, full;
  size_t reused = 0;  // evaluations answered from the memo
  // Shortcuts that leave the written allocation as it was (docs/decide.md):
  // with join_subset a whole-set evaluation of an allocation already probed
  // on the subset (a part of the whole set) runs only the other windows;
  // a method whose cheapest allocation meeting the target on the subset
  // takes more than settled_bytes (an earlier method's result, confirmed on
  // every token) cannot be written and is not confirmed (FallbackResult::settled).
  bool join_subset = true;
  uint64_t settled_bytes = std::numeric_limits<uint64_t>::max();
  std::string settled_by;  // the method that set settled_bytes
};

// Bytes and measured damage per rung of every group, for budget.hpp.
std::vector<RungCosts> rung_costs(const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                                  const std::vector<Sensitivity>& sensitivity);

// Expects the float weights in the engine and leaves them there. `start`,
// when given, is the full evaluation of the path's first allocation (all
// groups at rung 0), which then is not evaluated again; `memo`, when given,
// answers (and keeps) the evaluations of allocations seen before. With
// `acts` (a W8A8 request) a group at rung 0 also has its inputs quantized
// (the int8 rung is weight-only, dense is BF16); measure_sensitivity alike.
FallbackResult fall_back(Model& model, const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                         const std::vector<Allocation>& path, const std::string& method, const HeldOutEvaluator& quick,
                         const HeldOutEvaluator& full, const AccuracySpec& spec, const Accuracy* start = nullptr,
                         EvaluationMemo* memo = nullptr, ActivationSimulation* acts = nullptr);

bool meets_target(const Accuracy& a, const Accuracy& reference, const AccuracySpec& spec, double* target);

}  // namespace xquant::decide
