// fallback.hpp: the layer-wise error analysis and the fallback ladder.
//
// Sensitivity, two ways per group: measured (the KL divergence of the
// float model with only that group quantized, everything else float) and
// the proxy (the chosen candidate's Hessian-weighted output error from the
// calibration pass, no evaluation needed). Fallback: start with every group
// at the rule's bits; while the accuracy target misses, move the group with
// the most measured damage removed per extra byte one rung up the ladder
// (bits -> int8 -> dense), re-evaluate end to end, and record the step.
#pragma once

#include "decide/evaluator.hpp"
#include "decide/profile.hpp"

#include <string>
#include <vector>

namespace xquant::decide {

// rung 0: the chosen candidate; then the ladder's entries in order.
enum class Rung { Chosen, Int8, Dense };
std::string rung_name(Rung r, int bits);

struct Sensitivity {
  std::vector<double> measured_kld;  // per rung of the ladder (dense: 0)
  double proxy = 0;                  // chosen candidate's output error
};

struct FallbackStep {
  std::string moved;      // group moved in this step ("" for the start)
  std::string to;         // rung it moved to
  uint64_t bytes = 0;     // weight bytes of the covered Linears
  Accuracy accuracy;
  bool meets = false;
};

struct FallbackResult {
  std::vector<Rung> ladder;                 // rung 0 first
  std::vector<int> rung_of_group;           // final, index into ladder
  std::vector<FallbackStep> steps;
  bool met = false;
  double target = 0;                        // on the metric's scale
  std::string missed;                       // what is still off when !met
};

uint64_t rung_bytes(const GroupProfile& g, Rung r);

// The measured sensitivity of every group at every rung but the last
// (restores the float weights afterwards).
std::vector<Sensitivity> measure_sensitivity(Model& model, const std::vector<GroupProfile>& groups,
                                             const std::vector<Rung>& ladder, const HeldOutEvaluator& eval);

// Expects the float weights in the engine and leaves them there.
FallbackResult fall_back(Model& model, const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                         const std::vector<Sensitivity>& sensitivity, const HeldOutEvaluator& eval,
                         const AccuracySpec& spec);

bool meets_target(const Accuracy& a, const Accuracy& reference, const AccuracySpec& spec, double* target);

}  // namespace xquant::decide
