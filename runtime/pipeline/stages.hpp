// stages.hpp: running a rule's algorithm chain on one layer group.
//
// Every stage but the last must only transform (rescale weights/norm in
// place and return no codes); the last must quantize every linear. Shared by
// the streaming runner (data-free rules) and the calibrated runner.
#pragma once

#include "core/memory.hpp"
#include "core/runtime.hpp"
#include "pipeline/pipeline.hpp"

#include <xquant/xq_algorithm.h>

#include <vector>

namespace xquant {

struct GroupResult {
  std::vector<QuantTensor> quant;  // one per linear
  std::vector<double> rel_error;
};

// Union of the XQ_NEED_* bits of the rule's stages.
uint32_t rule_needs(Runtime& runtime, const QuantRule& rule);
// Whether a stage of the rule reruns its module (capability
// "needs:forward": AWQ), so the caller builds a GroupForward for it.
bool rule_needs_forward(Runtime& runtime, const QuantRule& rule);

// Fills each linear's scheme from the rule (scale dtype resolved by the
// caller) and runs the stages. Throws with the failing stage named.
GroupResult run_stages(Runtime& runtime, const QuantRule& rule, xq_layer_group& group);

// The xq_quant_scheme for weights `w` and activations `a`.
xq_quant_scheme scheme_of(const WeightScheme& w, const ActivationScheme& a, int64_t cols, xq_dtype scale_dtype);

// The dtype scales are stored in: the scheme's, "auto" = the model's torch_dtype.
xq_dtype scale_dtype_for(const WeightScheme& w, const Kv& config);

// The weight scheme a module of `cols` input columns gets: the rule's, or
// per-channel when the groups would be ragged and the output format cannot
// store ragged groups (capability "ragged-groups"). `why` says so then.
WeightScheme effective_weights(const WeightScheme& w, int64_t cols, bool format_takes_ragged, std::string* why);

}  // namespace xquant
