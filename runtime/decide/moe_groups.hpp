// moe_groups.hpp: the decision unit of a Mixture-of-Experts layer. The
// profile measures every candidate per calibration group (mlp_in: every
// expert's gate/up and the shared expert's, which read the same input; one
// group per expert's down_proj; the shared down_proj). The decision takes
// them together: one algorithm and one fallback rung for all the layer's
// expert Linears, because
//   - the consumers' fused-experts kernels take one scheme for every expert
//     of a layer, gate/up and down alike (vLLM's FusedMoE quant methods,
//     transformers' fused experts through get_experts_scheme, our engine's
//     moe_qmatmul for W4A16 experts);
//   - most experts see few calibration tokens, so a per-expert measured KLD
//     is noise, and measuring one per expert would multiply the sensitivity
//     and fallback evaluations by the expert count.
// The router (mlp.gate) and Qwen2-MoE's shared_expert_gate are never
// candidates (decision.cpp leaves them dense).
#pragma once

#include "checkpoint/architecture.hpp"
#include "decide/profile.hpp"

#include <vector>

namespace xquant::decide {

// `groups` in profile order; a MoE layer's groups from mlp_in on become one
// group "model.layers.L.mlp_experts" (members concatenated in profile order,
// each candidate's errors, bytes and seconds summed, its relative errors
// recomputed from the summed references, the choice made again on the sums).
// Dense layers' groups pass through unchanged.
std::vector<GroupProfile> merge_moe_groups(const Architecture& arch, std::vector<GroupProfile> groups);

}  // namespace xquant::decide
