// group_targets.hpp: the `targets` list of one config group the writer
// emits, and which modules may share a config group.
//
// Every module is named exactly, so compressed-tensors, vLLM and our reader
// match each one to the group it was written with whatever their order or
// priority rules (exact name > regex > class name; ignore first). MoE
// routed experts are the exception: transformers (5.x) loads them fused,
// one scheme for all experts, and finds that scheme as the config group
// whose targets hold an `re:` pattern mentioning "experts"
// (transformers/integrations/compressed_tensors.py get_experts_scheme); its
// dequantize=True path gives every other module the first group without
// one (get_dense_scheme). So experts get a config group of their own,
// targeted by anchored regexes ("re:^model\.layers\.0\.mlp\.experts\.(0|1)
// \.(down_proj|gate_proj)$": one per layer and set of projections, not one
// per expert, so matching stays cheap with 128 experts), and never share a
// group with other modules.
#pragma once

#include <string>
#include <vector>

namespace xquant::ct {

// A routed MoE expert's Linear ("...experts.<index>.<projection>"; the
// shared expert, "shared_expert.", is not one).
bool is_routed_expert(const std::string& module);

// Exact names for other modules, sorted; anchored "re:" patterns covering
// exactly `modules` when they are all routed experts.
std::vector<std::string> group_targets(const std::vector<std::string>& modules, bool experts);

}  // namespace xquant::ct
