// profile.hpp: the decision engine's calibrated pass. Layer by layer through
// the float model (LayerwiseCalibrator, float inputs for every group), for
// each Linear group the `auto` rule covers it
//   - measures the input's activation statistics that predict how badly a
//     static per-tensor activation scale fits (excess kurtosis, max/median
//     of the per-channel absmax, fraction of |x| > 6: LLM.int8()'s outlier
//     threshold, Dettmers et al. 2022, arXiv:2208.07339);
//   - runs every candidate algorithm on the group and scores it by the
//     Hessian-weighted output error sum_r (w_r - w^_r) H (w_r - w^_r)^T with
//     H = X^T X of the group's own calibration inputs (= ||(W - W^) X^T||^2,
//     the GPTQ objective, Frantar et al. 2022, arXiv:2210.17323);
//   - keeps each candidate's weights as the float model would see them
//     (W^ with any input rescaling of the algorithm folded back, so they can
//     be swapped into the float model for end-to-end evaluation);
//   - runs the ladder's int8 rung (rtn, per channel) the same way.
#pragma once

#include "calibrate/calibrator.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "pipeline/pipeline.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xquant::decide {

struct ActivationProfile {
  double excess_kurtosis = 0;         // of all sampled input values
  double max_over_median_absmax = 0;  // per-channel max |x|: max / median
  double frac_over_6 = 0;             // fraction of sampled |x| > 6
};

struct CandidateResult {
  std::string algorithm;  // rule's algorithm names, e.g. "gptq"
  bool ok = false;
  std::string error;      // why it could not run (ok == false)
  double output_error = 0;      // sum over members of tr(dW H dW^T)
  double rel_output_error = 0;  // output_error / tr(W H W^T)
  double rel_weight_error = 0;  // ||W - W^||^2 / ||W||^2 (no data: the fallback's plain baseline)
  double reference_error = 0;   // tr(W H W^T) summed over members (rel_output_error's denominator)
  double weight_norm = 0;       // ||W||^2 summed over members (rel_weight_error's denominator)
  double seconds = 0;
  uint64_t bytes = 0;           // weights + scales (+ zero points) as stored
  std::vector<std::vector<float>> weights;  // effective dequantized, per member
  // The algorithm's rescaling of the group's input (the written model sees
  // x / input_divisor); empty when it did not rescale.
  std::vector<float> input_divisor;
};

struct GroupProfile {
  int layer = 0, group = 0;
  std::string name;                  // e.g. "model.layers.0.mlp_down"
  std::vector<int> linears;          // LayerDesc::linears indices
  std::vector<std::string> modules;
  uint64_t params = 0;
  uint64_t dense_bytes = 0;          // the members at the ladder's top: BF16, 2 bytes a weight
  ActivationProfile activations;
  std::vector<CandidateResult> candidates;  // at the rule's bits
  int chosen = -1;                   // index into candidates
  std::string why;
  CandidateResult int8;              // the ladder's int8 rung
  bool dynamic_activations = false;  // W8A8: dynamic per-token (a static request switched, or asked)
  std::string activation_why;
  // W8A8: the calibration max |x| per input channel and the scale dtype the
  // static input scale is stored in (as the runner computes it), and the
  // measured KLD with only this group quantized, static vs dynamic (-1: not
  // measured; decision.cpp).
  std::vector<float> input_absmax;
  xq_dtype act_scale_dtype = XQ_DTYPE_F32;
  double kld_static = -1, kld_dynamic = -1;
};

// What the pass needs: the groups to profile ((layer, group) -> member
// linears), the candidate rules (validated, one algorithm each, the auto
// rule's schemes), and the int8 rung's rule.
struct ProfilePlan {
  std::map<std::pair<int, int>, std::vector<int>> members;
  std::map<std::string, WeightScheme> schemes;  // per module (per-channel fallback resolved)
  std::vector<QuantRule> candidates;
  QuantRule int8;
  bool want_int8 = false;
  // MoE layers: how experts with few routed tokens are calibrated (the
  // pipeline's calibration.moe).
  MoeCalibration moe;
  // Keep each candidate's dequantized weights (CandidateResult::weights) for
  // the end-to-end evaluation. Without one they are dropped once scored, so
  // the profile holds one layer's worth at a time.
  bool keep_weights = true;
  bool static_w8a8 = false;  // the request: static per-tensor activation scales
  bool w8a8 = false;         // the request quantizes activations (static or dynamic)
};

std::vector<GroupProfile> profile_groups(Runtime& runtime, Model& model, std::vector<std::vector<int32_t>> samples,
                                         const ProfilePlan& plan, uint64_t seed);

// Picks the candidate with the lowest measured output error and says why.
void choose_candidate(GroupProfile& gp);

// The outlier rule for a static W8A8 request (docs/decide.md).
bool activations_have_outliers(const ActivationProfile& a, std::string* evidence);

// Replaces the members' engine weights with `weights` (one per member).
void set_group_weights(Model& model, const GroupProfile& g, const std::vector<std::vector<float>>& weights);

}  // namespace xquant::decide
