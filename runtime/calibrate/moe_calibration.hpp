// moe_calibration.hpp: the Mixture-of-Experts calibration settings, shared
// by the calibrator and the pipeline (calibration.moe in a YAML pipeline).
#pragma once

#include <cstdint>

namespace xquant {

// Mixture-of-Experts calibration (docs/algorithms.md, "Mixture of experts").
// Every expert's gate/up statistics come from the tokens routed to it and
// its down_proj statistics from its own intermediate activations on those
// tokens. An expert with fewer than min_tokens routed tokens (never fewer
// than 1), or every expert with all_experts, takes all-token statistics
// instead: gate/up get the layer's mlp_in statistics (every token), and
// its down_proj the statistics of that expert run on every token (for the
// statistics only: the layer's output stays routed). Each such expert is
// logged and listed in LayerStats::experts. Needs sequential_groups (what
// the calibrated pipeline runs): in one-pass mode the fallback is decided
// after the only pass, so a fallback expert's gate/up statistics are the
// all-token ones but its down_proj statistics stay routed (possibly empty).
//
// Memory: in sequential mode each expert's gate/up statistics (an H x H
// Hessian for GPTQ: 16 MiB at H = 2048) are accumulated for at most
// experts_per_pass experts at a time, each chunk quantized and freed before
// the next (0: every expert at once). The mlp_in group is then handed to
// the algorithms chunk by chunk, which only a rule without a rescaling
// ("transform") algorithm allows; the calibrated pipeline sets 0 otherwise.
struct MoeCalibration {
  bool all_experts = false;
  int64_t min_tokens = 16;
  int64_t experts_per_pass = 16;
};

}  // namespace xquant
