// rule_assignment.cpp: see rule_assignment.hpp.
#include "pipeline/rule_assignment.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "checkpoint/linear_modules.hpp"
#include "pipeline/stages.hpp"

#include <fmt/format.h>

namespace xquant {

namespace {

bool any_matches(const std::vector<TargetPattern>& patterns, const std::string& module) {
  for (const auto& t : patterns)
    if (t.matches(module)) return true;
  return false;
}

// The index of the first rule that takes `module`, or -1.
int rule_for(const Pipeline& p, const std::string& module) {
  if (any_matches(p.ignore, module)) return -1;
  for (size_t i = 0; i < p.rules.size(); ++i)
    if (any_matches(p.rules[i].targets, module) && !any_matches(p.rules[i].ignore, module))
      return static_cast<int>(i);
  return -1;
}

struct PerChannelFallback {
  std::string module;
  int64_t cols = 0, group_size = 0;
};

// One warning for every module that fell back to per-channel (a model has
// dozens, all for the same reason), naming a few.
void warn_per_channel_fallbacks(const std::vector<PerChannelFallback>& fallbacks) {
  if (fallbacks.empty()) return;
  constexpr size_t kNamed = 3;
  std::vector<std::string> named;
  for (size_t i = 0; i < fallbacks.size() && i < kNamed; ++i)
    named.push_back(fmt::format("{} ({} columns, group_size {})", fallbacks[i].module, fallbacks[i].cols,
                                fallbacks[i].group_size));
  if (fallbacks.size() > kNamed) named.push_back(fmt::format("{} more", fallbacks.size() - kNamed));
  logger().warn("{} Linear module{} quantized per-channel: the input columns are not a multiple of group_size and "
                "the output format stores whole groups only ({})",
                fallbacks.size(), fallbacks.size() == 1 ? "" : "s", fmt::join(named, ", "));
}

}  // namespace

RuleAssignment assign_rules(Runtime& runtime, const Pipeline& p, const Checkpoint& cp, bool format_takes_ragged) {
  RuleAssignment out;
  std::vector<bool> rule_used(p.rules.size(), false);
  const std::vector<std::string> modules = linear_modules(cp);
  for (const auto& module : modules) {
    const int r = rule_for(p, module);
    if (r < 0) {
      out.dense.push_back(module);
      continue;
    }
    rule_used[static_cast<size_t>(r)] = true;
    out.assigned[module].rule = &p.rules[static_cast<size_t>(r)];
  }
  std::vector<PerChannelFallback> fallbacks;
  for (auto& [module, a] : out.assigned) {
    const int64_t cols = cp.require(module + ".weight").shape[1];
    std::string why;
    a.weights = effective_weights(a.rule->weights, cols, format_takes_ragged, &why);
    if (!why.empty()) fallbacks.push_back({module, cols, a.rule->weights.group_size});
  }
  warn_per_channel_fallbacks(fallbacks);
  // A tied lm_head has no tensor of its own but is a Linear to vLLM and
  // compressed-tensors: list it as ignored, as llm-compressor does.
  if (cp.config().get_bool("tie_word_embeddings", false) && !cp.find("lm_head.weight")) out.dense.push_back("lm_head");
  for (size_t i = 0; i < p.rules.size(); ++i)
    if (!rule_used[i]) logger().warn("{}: this rule matched no Linear module", p.rules[i].mark.text());
  if (out.assigned.empty())
    fail(XQ_ERR_INVALID_ARGUMENT, "no Linear module of '{}' matched the quantize rules (Linear modules: {})",
         p.model_path.string(), fmt::join(modules, ", "));
  for (const auto& [module, a] : out.assigned)
    out.calibrated = out.calibrated || rule_needs(runtime, *a.rule) != 0 ||
                     (a.rule->activations.enabled && !a.rule->activations.dynamic);
  return out;
}

}  // namespace xquant
