#include "checkpoint/linear_modules.hpp"

namespace xquant {

std::string linear_module_of(const TensorEntry& t) {
  const std::string suffix = ".weight";
  if (t.shape.size() != 2 || t.name.size() <= suffix.size() || !t.name.ends_with(suffix)) return "";
  std::string module = t.name.substr(0, t.name.size() - suffix.size());
  if (module == "lm_head" || module.ends_with("_proj")) return module;
  // Mixture of experts: the router (mlp.gate, Mixtral's block_sparse_moe.gate),
  // Qwen2-MoE's shared_expert_gate, Mixtral's experts.{e}.w1/w2/w3.
  if (module.ends_with(".mlp.gate") || module.ends_with(".block_sparse_moe.gate") ||
      module.ends_with(".shared_expert_gate"))
    return module;
  if (module.find(".block_sparse_moe.experts.") != std::string::npos &&
      (module.ends_with(".w1") || module.ends_with(".w2") || module.ends_with(".w3")))
    return module;
  return "";
}

std::vector<std::string> linear_modules(const Checkpoint& cp) {
  std::vector<std::string> out;
  for (const auto& t : cp.tensors())
    if (auto m = linear_module_of(t); !m.empty()) out.push_back(m);
  return out;
}

}  // namespace xquant
