// linear_modules.hpp: which tensors of a canonical (HF-named) checkpoint
// are Linear weights, the unit that quantize rules target.
#pragma once

#include "checkpoint/checkpoint.hpp"

#include <string>
#include <vector>

namespace xquant {

// "model.layers.0.mlp.down_proj" for "model.layers.0.mlp.down_proj.weight"
// when that tensor is a Linear weight (2-D, a *_proj or lm_head module, a
// MoE router mlp.gate / block_sparse_moe.gate, shared_expert_gate, Mixtral's
// experts' w1/w2/w3), else "".
std::string linear_module_of(const TensorEntry& t);

// Every Linear module of the checkpoint, in catalog order.
std::vector<std::string> linear_modules(const Checkpoint& cp);

}  // namespace xquant
