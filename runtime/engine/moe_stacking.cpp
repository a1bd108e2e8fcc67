// moe_stacking.cpp: on device providers, each routed expert's gate_proj and
// up_proj stacked along rows into one weight at load, so a MoE layer runs
// one moe_qmatmul for both instead of two. The two calls read the same
// input and are routed the same way, so the second one only repeated the
// provider's sort of the routing slots, its per-row activation quantization
// (W8A8) and its launches, and ran a grouped GEMM half as wide. The kernel
// benchmark (bench/cuda/bench_moe.py) has always timed gate|up this way; the
// dense layers' gate|up do the same (Model::load_stacked, engine/fuse.hpp).
//
// All experts of a layer or none: moe_qmatmul takes one expert set of one
// shape. Not stacked (each expert's gate and up load one by one, as before):
// experts stored in the provider's layout (adopted as stored, no repack at
// load), parts that cannot share one description (stack_rows' reasons, e.g.
// act-order permutations that differ), and XQUANT_STACK_EXPERTS=0, the
// baseline of an A/B on the GPU (any value other than 0 or 1 is refused).
#include "engine/model.hpp"
#include "engine/stored_layouts.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <cstdlib>
#include <string>

namespace xquant {

namespace {

bool stack_experts_enabled() {
  const char* env = std::getenv("XQUANT_STACK_EXPERTS");
  if (!env || !*env || std::string(env) == "1") return true;
  if (std::string(env) == "0") return false;
  fail(XQ_ERR_INVALID_ARGUMENT, "XQUANT_STACK_EXPERTS='{}': expected 0 (experts' gate and up one by one) or 1", env);
}

}  // namespace

void Model::stack_expert_gate_up(int layer, const LayerDesc& d, LayerWeights& w, std::vector<bool>& loaded) {
  const MoeDesc& m = d.experts;
  if (m.n_experts == 0 || !stack_experts_enabled()) return;
  std::vector<int> members;
  for (int64_t e = 0; e < m.n_experts; ++e) members.insert(members.end(), {m.gate[e], m.up[e]});
  auto keep_one_by_one = [&](const std::string& why) {
    // Once a model at info (its MoE layers share their shapes), every layer at debug.
    logger().log(layer == 0 ? spdlog::level::info : spdlog::level::debug,
                 "layer {}: experts' gate_proj and up_proj not stacked ({}): two moe_qmatmul calls a step", layer, why);
  };
  if (stored_in_provider_layout(*checkpoint_, *kernels_, d, members))
    return keep_one_by_one("stored in the provider's layout, adopted as stored");
  std::vector<LinearWeights> stacked;
  stacked.reserve(static_cast<size_t>(m.n_experts));
  for (int64_t e = 0; e < m.n_experts; ++e) {
    stacked.push_back(load_stacked(d, {m.gate[e], m.up[e]}, w, "gate|up"));
    if (!stacked.back().desc) {
      for (LinearWeights& s : stacked) discard_stacked(s, 2);
      return keep_one_by_one("expert " + std::to_string(e) + "'s gate and up do not stack");
    }
  }
  for (int i : members) {
    w.linears[static_cast<size_t>(i)].desc = &d.linears[static_cast<size_t>(i)];
    w.linears[static_cast<size_t>(i)].layout = "stacked into expert gate|up";
    loaded[static_cast<size_t>(i)] = true;
  }
  w.expert_gate_up = std::move(stacked);
}

}  // namespace xquant
