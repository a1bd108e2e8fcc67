// decision.cpp: see decision.hpp.
#include "decide/decision.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "decide/activation_sim.hpp"
#include "decide/held_out_tokens.hpp"
#include "decide/moe_groups.hpp"
#include "decide/overlap.hpp"
#include "decide/report.hpp"
#include "engine/evaluate.hpp"
#include "pipeline/stages.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

namespace xquant::decide {

namespace {

using Clock = std::chrono::steady_clock;

// Measured sensitivity costs one evaluation per group and rung; it ranks
// groups, so it runs on about kSensitivityTokens evaluation tokens (whole
// windows spread over the text), as do the fallback's probes (each method's
// result is confirmed on all of them).
constexpr size_t kSensitivityTokens = 2048;
// About `budget` tokens of whole evaluation windows (ctx tokens each),
// spread evenly over the text: the first tokens alone can be unlike the rest
// (WikiText's first 2,048 score stories260K's perplexity 10% above the first
// 8,192), which misleads a relative perplexity target.
std::vector<size_t> spread_windows(size_t n_tokens, int64_t ctx, size_t budget) {
  const size_t w = static_cast<size_t>(ctx), n_windows = (n_tokens + w - 1) / w;
  const size_t take = std::max<size_t>(1, budget / w), stride = std::max<size_t>(1, n_windows / take);
  std::vector<size_t> out;
  size_t taken = 0;
  for (size_t k = 0; k < n_windows && taken + w <= budget + w - 1; k += stride) {
    const size_t b = k * w, e = std::min(n_tokens, b + w);
    if (e - b < w && !out.empty()) break;  // a short last window only alone (it would shift the ones after it)
    if (e - b < 2) break;                  // not a window (nothing to score)
    out.push_back(k);
    taken += e - b;
  }
  return out;
}

// The variant row of the per-group choice (lowest calibration error per group).
constexpr const char* kPerGroupChoice = "per-group choice";

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const QuantRule& the_automatic_rule(const Pipeline& p) {
  for (const auto& r : p.rules)
    if (!r.automatic || p.rules.size() != 1)
      fail(XQ_ERR_UNSUPPORTED,
           "{}: 'algorithm: auto' must be the pipeline's only rule (the decision engine decides for every Linear it "
           "targets; exclude modules with ignore)",
           r.mark.text());
  return p.rules.front();
}

bool targeted(const QuantRule& rule, const Pipeline& p, const std::string& module) {
  bool hit = false;
  for (const auto& t : rule.targets) hit = hit || t.matches(module);
  for (const auto& t : rule.ignore) hit = hit && !t.matches(module);
  for (const auto& t : p.ignore) hit = hit && !t.matches(module);
  return hit;
}

bool w8a8_only(const LoadedPlugin& plugin) {
  for (const auto& cap : plugin.capabilities())
    if (cap.rfind("scheme-default:activations", 0) == 0) return true;
  return false;
}

QuantRule rule_with(const QuantRule& base, const std::vector<std::string>& algorithms) {
  QuantRule r = base;
  r.automatic = false;
  r.stages.clear();
  for (const auto& a : algorithms) r.stages.push_back({a, base.mark, YAML::Node(), {}});
  return r;
}

// The candidates: every algorithm plugin the registry has, rtn first (ties
// go to the cheapest); W8A8-only ones (SmoothQuant) and the SmoothQuant ->
// GPTQ chain only for a W8A8 request. `params: {candidates: [...]}` keeps
// those named, in that order (each must be on offer). Validated like any
// rule (defaults filled). The int8 rung is the last rule: rtn, 8 bits, per
// channel.
std::vector<QuantRule> candidate_rules(Runtime& rt, const Pipeline& p, const QuantRule& rule) {
  std::vector<std::string> names;
  for (LoadedPlugin* pl : rt.plugins().of_kind(XQ_PLUGIN_ALGORITHM))
    if (!w8a8_only(*pl) || rule.activations.enabled) names.push_back(pl->name());
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return std::make_tuple(a != "rtn", a) < std::make_tuple(b != "rtn", b);
  });
  if (names.empty() || names.front() != "rtn")
    fail(XQ_ERR_NOT_FOUND, "'algorithm: auto' needs the rtn algorithm plugin (the fallback ladder's int8 rung)");
  auto offered = [&](const std::string& n) { return std::count(names.begin(), names.end(), n) > 0; };
  std::vector<std::vector<std::string>> chains;
  for (const auto& n : names) chains.push_back({n});
  if (rule.activations.enabled && offered("gptq") && offered("smoothquant")) chains.push_back({"smoothquant", "gptq"});
  if (!rule.candidates.empty()) {
    std::vector<std::string> on_offer;
    for (const auto& c : chains) on_offer.push_back(fmt::format("{}", fmt::join(c, "+")));
    std::vector<std::vector<std::string>> kept;
    for (const auto& want : rule.candidates) {
      auto it = std::find(on_offer.begin(), on_offer.end(), want);
      if (it == on_offer.end())
        fail(XQ_ERR_INVALID_ARGUMENT, "{}: candidate '{}' is not on offer for {} (candidates: {})", rule.mark.text(), want,
             describe_scheme(rule.weights, rule.activations), fmt::join(on_offer, ", "));
      kept.push_back(chains[static_cast<size_t>(it - on_offer.begin())]);
    }
    chains = std::move(kept);
  }
  Pipeline check = p;
  check.rules.clear();
  for (const auto& c : chains) check.rules.push_back(rule_with(rule, c));
  QuantRule int8 = rule_with(rule, {"rtn"});
  int8.weights = WeightScheme{};
  int8.weights.bits = 8;
  int8.weights.strategy = XQ_STRATEGY_CHANNEL;
  int8.weights.scale_dtype = rule.weights.scale_dtype;
  int8.activations = ActivationScheme{};
  check.rules.push_back(int8);
  validate_with_plugins(check, rt);
  return check.rules;
}

ProfilePlan plan_for(Runtime& rt, const Pipeline& p, const QuantRule& rule, const Model& model,
                     std::vector<QuantRule> rules) {
  LoadedPlugin& format = rt.plugins().require(XQ_PLUGIN_FORMAT, p.output_format);
  const bool ragged = format.has_capability("ragged-groups");
  ProfilePlan plan;
  const Architecture& arch = model.arch();
  for (const auto& L : arch.layers) {
    if (L.moe && rule.activations.enabled)
      fail(XQ_ERR_UNSUPPORTED,
           "{}: 'algorithm: auto' with activation quantization does not handle Mixture-of-Experts layers yet "
           "(layer {}); ask for weight-only quantization, or give the experts a rule with an algorithm",
           rule.mark.text(), L.index);
    for (size_t g = 0; g < L.groups.size(); ++g) {
      if (L.groups[g].stats_only) continue;  // a MoE expert's routed-token statistics; its Linears are in mlp_in
      for (int li : L.groups[g].linears) {
        const LinearDesc& d = L.linears[static_cast<size_t>(li)];
        // Routers stay dense whatever the targets say: a flipped top-k choice
        // sends a token to other experts altogether.
        if (L.moe && (li == L.experts.router || li == L.experts.shared_expert_gate)) continue;
        if (!targeted(rule, p, d.module)) continue;
        plan.members[{L.index, static_cast<int>(g)}].push_back(li);
        std::string why;
        plan.schemes[d.module] = effective_weights(rule.weights, d.in, ragged, &why);
        if (!why.empty()) logger().debug("decide: {}: {}", d.module, why);
      }
    }
  }
  if (plan.members.empty())
    fail(XQ_ERR_INVALID_ARGUMENT, "{}: 'algorithm: auto' matched no Linear inside the decoder layers", rule.mark.text());
  plan.int8 = rules.back();
  rules.pop_back();
  plan.candidates = std::move(rules);
  const auto& ladder = p.accuracy.fallback;
  plan.want_int8 = p.accuracy.enabled && rule.weights.bits < 8 &&
                   std::find(ladder.begin(), ladder.end(), "int8") != ladder.end();
  plan.moe = p.calibration.moe;
  plan.static_w8a8 = rule.activations.enabled && !rule.activations.dynamic;
  plan.w8a8 = rule.activations.enabled;
  return plan;
}

std::vector<Rung> ladder_of(const Decision& d) {
  std::vector<Rung> ladder{Rung::Chosen};
  for (const auto& step : d.accuracy.fallback) {
    if (step == "int8" && d.bits < 8) ladder.push_back(Rung::Int8);
    if (step == "bf16") ladder.push_back(Rung::Dense);
  }
  return ladder;
}

// Each fixed candidate everywhere, then the per-group choice, simulated in
// the float model and scored on `eval` (the evaluation subset: these rows
// only rank the candidates; the one kept is confirmed on every token).
ActivationMode mode_of(const GroupProfile& g) {
  return g.dynamic_activations ? ActivationMode::DynamicToken : ActivationMode::StaticTensor;
}

void simulate_variants(Model& model, Decision& d, const HeldOutEvaluator& eval, ActivationSimulation* acts) {
  std::vector<std::vector<std::vector<float>>> original;
  for (const auto& g : d.groups) {
    original.emplace_back();
    for (int li : g.linears) original.back().push_back(model.layer(g.layer).linears[static_cast<size_t>(li)].w);
  }
  auto run = [&](const std::string& name, auto pick) {
    VariantRow row{name, "simulated", 0, {}};
    for (size_t i = 0; i < d.groups.size(); ++i) {
      const GroupProfile& g = d.groups[i];
      const CandidateResult& c = pick(g);
      if (!c.ok) return;
      set_group_weights(model, g, c.weights);
      if (acts) acts->quantize(i, static_cast<int>(&c - g.candidates.data()), mode_of(g));
      row.bytes += c.bytes;
    }
    row.accuracy = eval.evaluate(model);
    d.variants.push_back(row);
  };
  for (size_t k = 0; k < d.candidate_rules.size(); ++k)
    run(d.candidate_rules[k].algorithm_names(), [&](const GroupProfile& g) -> const CandidateResult& { return g.candidates[k]; });
  run(kPerGroupChoice,
      [&](const GroupProfile& g) -> const CandidateResult& { return g.candidates[static_cast<size_t>(g.chosen)]; });
  for (size_t i = 0; i < d.groups.size(); ++i) set_group_weights(model, d.groups[i], original[i]);
  if (acts) acts->all_float();
}

// `auto` never keeps a configuration it measured worse than another. The
// per-group choice is made on calibration data; each fixed candidate
// everywhere (at no more bytes) and the per-group mix are also scored end to
// end on the evaluation subset, and the two best there are evaluated on
// every evaluation token (the subset ranks; close contenders can swap on the
// whole set: stories260K INT3, awq 184.2 vs gptq 186.0 on the subset, 157.4
// vs 152.2 on all 8,192 tokens). The better of the two on the whole set
// becomes the choice ("auto", which the fallback starts from); its rows and
// the runner-up's are added to the variants with every token scored.
void choose_end_to_end(Model& model, Decision& d, const HeldOutEvaluator& quick, ActivationSimulation* acts,
                       bool shortcuts) {
  const bool ppl = d.accuracy.metric == "ppl";
  auto value = [&](const Accuracy& a) { return ppl ? a.ppl : a.kld; };
  struct Contender {
    int candidate;  // -1: the per-group mix
    std::string name;
    Accuracy subset;
  };
  std::vector<Contender> contenders;
  const VariantRow* mix = nullptr;
  for (const auto& v : d.variants)
    if (v.name == kPerGroupChoice) mix = &v;
  if (!mix) return;
  contenders.push_back({-1, mix->name, mix->accuracy});
  for (size_t k = 0; k < d.candidates.size(); ++k)
    for (const auto& v : d.variants)
      if (v.name == d.candidates[k] && v.bytes <= mix->bytes) contenders.push_back({static_cast<int>(k), v.name, v.accuracy});
  // Best first; on a tie the mix, then the cheaper candidate (registry order).
  std::stable_sort(contenders.begin(), contenders.end(),
                   [&](const Contender& a, const Contender& b) { return value(a.subset) < value(b.subset); });
  const bool whole_set = &quick == d.evaluator.get();
  contenders.resize(std::min<size_t>(contenders.size(), whole_set ? 1 : 2));
  std::vector<int> per_group_choice;
  for (const auto& g : d.groups) per_group_choice.push_back(g.chosen);
  std::vector<std::vector<std::vector<float>>> original;
  for (const auto& g : d.groups) {
    original.emplace_back();
    for (int li : g.linears) original.back().push_back(model.layer(g.layer).linears[static_cast<size_t>(li)].w);
  }
  std::vector<Accuracy> all(contenders.size());
  for (size_t c = 0; c < contenders.size(); ++c) {
    if (whole_set) {
      all[c] = contenders[c].subset;
      continue;
    }
    for (size_t i = 0; i < d.groups.size(); ++i) {
      const int k = contenders[c].candidate < 0 ? per_group_choice[i] : contenders[c].candidate;
      set_group_weights(model, d.groups[i], d.groups[i].candidates[static_cast<size_t>(k)].weights);
      if (acts) acts->quantize(i, k, mode_of(d.groups[i]));
    }
    // Scored on the subset already: only the other windows run.
    all[c] = shortcuts && quick.is_part_of(*d.evaluator)
                 ? d.evaluator->evaluate_knowing(model, quick, contenders[c].subset)
                 : d.evaluator->evaluate(model);
    d.variants.push_back({contenders[c].name, "simulated", mix->bytes, all[c]});
    mix = nullptr;  // d.variants may have moved
    for (const auto& v : d.variants)
      if (v.name == kPerGroupChoice) mix = &v;
  }
  for (size_t i = 0; i < d.groups.size(); ++i) set_group_weights(model, d.groups[i], original[i]);
  if (acts) acts->all_float();
  size_t win = 0;
  for (size_t c = 1; c < contenders.size(); ++c)
    if (value(all[c]) < value(all[win])) win = c;
  if (!whole_set) {
    std::string why = fmt::format("end to end on the {}-token subset the best were", quick.tokens());
    for (size_t c = 0; c < contenders.size(); ++c)
      why += fmt::format("{} {} ({} {:.5g} on the subset, {:.5g} on all {} tokens)", c ? "," : "", contenders[c].name,
                         d.accuracy.metric, value(contenders[c].subset), value(all[c]), d.evaluator->tokens());
    why += fmt::format(": {} kept", contenders[win].name);
    d.notes.push_back(why);
    logger().info("decide: {}", why);
  }
  if (contenders[win].candidate >= 0) {
    const int k = contenders[win].candidate;
    const std::string why = fmt::format("; end to end {} everywhere scored {} {:.5g}, better than the per-group "
                                        "choice, so {} everywhere",
                                        contenders[win].name, d.accuracy.metric, value(all[win]), contenders[win].name);
    for (auto& g : d.groups)
      if (g.candidates[static_cast<size_t>(k)].ok) {
        g.chosen = k;
        g.why += why;
      }
  }
  uint64_t bytes = 0;
  for (const auto& g : d.groups) bytes += g.candidates[static_cast<size_t>(g.chosen)].bytes;
  d.variants.push_back({"auto", "simulated", bytes, all[win]});
  d.auto_on_subset = contenders[win].subset;
}

// A static W8A8 request, measured: per group, its chosen weights with
// static per-tensor and with dynamic per-token input quantization, everything
// else float, scored from the group's layer on. Dynamic is nearly always the
// more accurate (stories260K: every group); static is what was asked and is
// cheaper at inference (no per-token max), so it stays unless it costs the
// group more than an equal share of the accuracy target: KLD(static) -
// KLD(dynamic) > target / groups, the target in nats (a ppl increase x is
// log(1 + x) of mean NLL, which the KLD bounds from below on average). The
// statistics rule (profile.cpp) is kept in the reason as evidence only.
void measure_activation_modes(Model& model, Decision& d, const HeldOutEvaluator& quick, ActivationSimulation& acts) {
  const double target_nats =
      d.accuracy.metric == "ppl" ? std::log1p(d.accuracy.max_increase) : d.accuracy.max_increase;
  const double share = target_nats / static_cast<double>(d.groups.size());
  for (size_t i = 0; i < d.groups.size(); ++i) {
    GroupProfile& g = d.groups[i];
    std::vector<std::vector<float>> original;
    for (int li : g.linears) original.push_back(model.layer(g.layer).linears[static_cast<size_t>(li)].w);
    set_group_weights(model, g, g.candidates[static_cast<size_t>(g.chosen)].weights);
    acts.quantize(i, g.chosen, ActivationMode::StaticTensor);
    const bool mlp = g.group >= LayerDesc::kMlpIn;  // its layer's attention half is the float one
    g.kld_static = quick.evaluate_from(model, g.layer, mlp).kld;
    acts.quantize(i, g.chosen, ActivationMode::DynamicToken);
    g.kld_dynamic = quick.evaluate_from(model, g.layer, mlp).kld;
    set_group_weights(model, g, original);
    acts.as_float(i);
    const bool rule_says_dynamic = g.dynamic_activations;
    g.dynamic_activations = g.kld_static - g.kld_dynamic > share;
    std::string evidence;
    activations_have_outliers(g.activations, &evidence);
    g.activation_why = fmt::format("measured with only this group quantized ({} tokens): KLD {:.5g} with a static "
                                   "per-tensor input scale, {:.5g} dynamic per-token; static costs {:.3g} more, {} the "
                                   "group's share of the target ({:.3g} = {:.4g} nats / {} groups): {}; the statistics "
                                   "rule {} ({})",
                                   quick.tokens(), g.kld_static, g.kld_dynamic, g.kld_static - g.kld_dynamic,
                                   g.dynamic_activations ? "over" : "within", share, target_nats, d.groups.size(),
                                   g.dynamic_activations ? "dynamic per-token" : "static per-tensor kept",
                                   rule_says_dynamic ? "would refuse static" : "would keep static", evidence);
    logger().info("decide: {}: {}", g.name, g.activation_why);
  }
}

// A byte limit below every group at the rule's bits leaves nothing to choose.
// Checked right after the profile, before any evaluation.
void check_max_bytes(const std::vector<GroupProfile>& groups, const AccuracySpec& spec) {
  if (spec.max_bytes == 0) return;
  uint64_t least = 0;
  for (const auto& g : groups) least += rung_bytes(g, Rung::Chosen);
  if (least > spec.max_bytes)
    fail(XQ_ERR_INVALID_ARGUMENT,
         "{}: accuracy.max_bytes {} is below the smallest configuration: every covered Linear at the rule's bits "
         "takes {} weight bytes",
         spec.mark.text(), spec.max_bytes, least);
}

// Each way of climbing the ladder (budget.hpp) searched end to end, within
// accuracy.max_bytes; the plain weight-error ranking only when asked
// (compare_baseline). The written configuration is the cheapest that meets
// the target (the knapsack's on a tie), or the most accurate when none does.
void run_fallbacks(Model& model, Decision& d, const std::vector<Rung>& ladder, const HeldOutEvaluator& quick,
                   const AccuracySpec& spec, ActivationSimulation* acts, bool shortcuts) {
  const std::vector<RungCosts> costs = rung_costs(d.groups, ladder, d.sensitivity);
  const Accuracy* start = nullptr;
  for (const auto& v : d.variants)
    if (v.name == "auto") start = &v.accuracy;
  std::vector<BudgetMethod> methods{BudgetMethod::Knapsack, BudgetMethod::Greedy};
  if (spec.compare_baseline) methods.push_back(BudgetMethod::WeightError);
  EvaluationMemo memo;
  memo.join_subset = shortcuts;
  if (&quick != d.evaluator.get()) memo.quick.emplace(std::vector<int>(d.groups.size(), 0), d.auto_on_subset);
  for (BudgetMethod m : methods) {
    const auto path = allocation_path(costs, m, 48, spec.max_bytes);
    // The baseline is for the report: always searched to the end.
    const bool baseline = m == BudgetMethod::WeightError;
    EvaluationMemo kept = memo;
    if (baseline) memo.settled_bytes = std::numeric_limits<uint64_t>::max();
    d.fallback_methods.push_back(
        fall_back(model, d.groups, ladder, path, method_name(m), quick, *d.evaluator, spec, start, &memo, acts));
    if (baseline) {
      memo.settled_bytes = kept.settled_bytes;
      memo.settled_by = kept.settled_by;
    }
    FallbackResult& r = d.fallback_methods.back();
    if (shortcuts && !baseline && r.met && r.steps.back().bytes < memo.settled_bytes) {
      memo.settled_bytes = r.steps.back().bytes;
      memo.settled_by = r.method;
    }
    const auto whole = allocation_path(costs, m);
    if (!r.met && r.settled.empty() && path.size() < whole.size())
      r.missed = fmt::format("{} {:.5g} > target {:.5g} at {} bytes, the last allocation within max_bytes {} (the "
                             "ladder's top takes {})",
                             spec.metric, spec.metric == "ppl" ? r.steps.back().accuracy.ppl : r.steps.back().accuracy.kld,
                             r.target, r.steps.back().bytes, spec.max_bytes, whole.back().bytes);
  }
  const bool ppl = spec.metric == "ppl";
  auto better = [&](const FallbackResult& a, const FallbackResult& b) {
    const FallbackStep &x = a.steps.back(), &y = b.steps.back();
    if (a.met != b.met) return a.met;
    if (a.met) return x.bytes < y.bytes;
    return (ppl ? x.accuracy.ppl : x.accuracy.kld) < (ppl ? y.accuracy.ppl : y.accuracy.kld);
  };
  d.evaluations_reused = memo.reused;
  // The baseline (weight error) is measured for comparison, never written.
  d.fallback = d.fallback_methods.front();
  for (size_t k = 1; k < d.fallback_methods.size(); ++k)
    if (d.fallback_methods[k].method != method_name(BudgetMethod::WeightError) &&
        better(d.fallback_methods[k], d.fallback))
      d.fallback = d.fallback_methods[k];
}

// One rule per (algorithm, rung, activation mode), naming its modules
// exactly; dense groups join the ignore list.
Pipeline concrete_pipeline(const Pipeline& p, Decision& d) {
  Pipeline c = p;
  c.rules.clear();
  c.accuracy = AccuracySpec{};
  c.report_path.clear();
  std::map<std::tuple<int, std::string, bool>, QuantRule> rules;
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const GroupProfile& g = d.groups[i];
    const Rung r = d.fallback.ladder.empty() ? Rung::Chosen
                                             : d.fallback.ladder[static_cast<size_t>(d.fallback.rung_of_group[i])];
    if (r == Rung::Dense) {  // left out of every rule, its weights stored in BF16
      d.dense_groups.push_back(g.name);
      for (const auto& m : g.modules) c.ignore.push_back(TargetPattern{m, false, false, {}});
      const LayerDesc& L = d.float_model->arch().layers[static_cast<size_t>(g.layer)];
      for (int li : g.linears) c.bf16_tensors.push_back(L.linears[static_cast<size_t>(li)].weight_name());
      continue;
    }
    const QuantRule& base = r == Rung::Int8 ? d.int8_rule : d.candidate_rules[static_cast<size_t>(g.chosen)];
    auto key = std::make_tuple(static_cast<int>(r), base.algorithm_names(), g.dynamic_activations);
    auto it = rules.find(key);
    if (it == rules.end()) {
      QuantRule rule = base;
      rule.targets.clear();
      rule.ignore.clear();
      if (g.dynamic_activations) {
        rule.activations.dynamic = true;
        rule.activations.strategy = "token";
      }
      it = rules.emplace(key, std::move(rule)).first;
    }
    for (const auto& m : g.modules) it->second.targets.push_back(TargetPattern{m, false, false, {}});
  }
  for (auto& [key, rule] : rules) {
    std::vector<std::string> names;
    for (const auto& t : rule.targets) names.push_back(t.text);
    d.rules_written.push_back(fmt::format("{} {}: {}", rule.algorithm_names(),
                                          describe_scheme(rule.weights, rule.activations), fmt::join(names, ", ")));
    c.rules.push_back(std::move(rule));
  }
  return c;
}

uint64_t checkpoint_bytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") total += e.file_size();
  return total;
}

std::filesystem::path report_path_of(const Pipeline& p) {
  if (!p.report_path.empty()) return p.report_path;
  if (p.explain_only) return {};
  return p.output_path / "decision-report.html";
}

}  // namespace

Decision decide(Runtime& rt, const Pipeline& p, const DecideOptions& options) {
  const auto t0 = Clock::now();
  const bool layers_on_demand = options.layers_on_demand.value_or(!p.accuracy.enabled);
  if (layers_on_demand && p.accuracy.enabled)
    fail(XQ_ERR_INVALID_ARGUMENT, "decide: layers on demand only without an accuracy section (evaluating end to end "
         "needs every weight in memory)");
  const QuantRule& rule = the_automatic_rule(p);
  if (!p.calibration.enabled)
    fail(XQ_ERR_INVALID_ARGUMENT,
         "{}: 'algorithm: auto' measures every candidate on calibration data; add calibration: {{text: FILE}}",
         rule.mark.text());
  Decision d;
  d.model = p.model_path.string();
  d.calibration_text = p.calibration.text.string();
  d.scheme = describe_scheme(rule.weights, rule.activations);
  d.bits = rule.weights.bits;
  d.accuracy = p.accuracy;
  const std::string calibration = read_text_file(p.calibration.text, "calibration text");
  std::string evaluation;
  if (p.accuracy.enabled) {
    d.evaluation_text = p.accuracy.text.string();
    evaluation = read_text_file(p.accuracy.text, "accuracy text");
    d.overlap = check_no_overlap(p.calibration.text, calibration, p.accuracy.text, evaluation);
  }

  ModelOptions mo;
  mo.dequantize_all = true;
  mo.tokenizer_from = p.calibration.tokenizer;
  mo.layers_on_demand = layers_on_demand;
  d.float_model = Model::open(rt, p.model_path, mo);
  Model& model = *d.float_model;
  d.candidate_rules = candidate_rules(rt, p, rule);
  ProfilePlan plan = plan_for(rt, p, rule, model, d.candidate_rules);
  plan.keep_weights = p.accuracy.enabled;
  d.int8_rule = d.candidate_rules.back();
  d.candidate_rules.pop_back();
  for (const auto& r : d.candidate_rules) d.candidates.push_back(r.algorithm_names());
  auto samples = LayerwiseCalibrator::samples_from_text(model, calibration, p.calibration.samples,
                                                        p.calibration.seq_len, p.calibration.seed);
  d.groups = merge_moe_groups(model.arch(), profile_groups(rt, model, std::move(samples), plan, p.calibration.seed));
  for (const auto& g : d.groups)
    for (size_t k = 0; k < g.candidates.size(); ++k)
      if (g.candidates[k].algorithm == "gptq") d.seconds.gptq_algorithm += g.candidates[k].seconds;
  d.seconds.profile = since(t0);
  check_max_bytes(d.groups, p.accuracy);
  if (!p.accuracy.enabled) {
    d.seconds.total = since(t0);
    return d;
  }

  auto t1 = Clock::now();
  const int64_t ctx = std::min<int64_t>(512, model.config().get_int("max_position_embeddings", 512));
  std::vector<int32_t> tokens = held_out_tokens(model, evaluation, p.accuracy.max_tokens);
  const size_t n_tokens = tokens.size();
  d.evaluator = std::make_shared<HeldOutEvaluator>(model, std::move(tokens), ctx);
  std::unique_ptr<HeldOutEvaluator> subset;
  if (n_tokens > kSensitivityTokens) {
    const size_t n_windows = (n_tokens + static_cast<size_t>(ctx) - 1) / static_cast<size_t>(ctx);
    // Its windows are the whole set's: the float reference is sliced, not run again.
    subset = std::make_unique<HeldOutEvaluator>(*d.evaluator, spread_windows(n_tokens, ctx, kSensitivityTokens));
    d.notes.push_back(fmt::format("ranked the candidates, measured sensitivity and probed the fallback paths on {} of "
                                  "the {} evaluation windows, spread evenly ({} tokens; the choice and each fallback's "
                                  "result confirmed on all {})",
                                  (subset->tokens() + static_cast<size_t>(ctx) - 1) / static_cast<size_t>(ctx),
                                  n_windows, subset->tokens(), n_tokens));
  }
  d.reference = d.evaluator->reference_accuracy();
  d.eval_tokens = d.evaluator->tokens();
  HeldOutEvaluator& quick = subset ? *subset : *d.evaluator;
  // A W8A8 request: every evaluation quantizes the inputs of the groups at
  // the rule's bits too (float until set; removed when this returns).
  std::unique_ptr<ActivationSimulation> acts;
  if (rule.activations.enabled) acts = std::make_unique<ActivationSimulation>(model, d.groups);
  quick.cache_layer_inputs(model);  // group-alone measurements start at the group's own layer
  if (acts && !rule.activations.dynamic) measure_activation_modes(model, d, quick, *acts);
  simulate_variants(model, d, quick, acts.get());
  choose_end_to_end(model, d, quick, acts.get(), options.shortcuts);
  d.seconds.evaluate = since(t1);

  t1 = Clock::now();
  const std::vector<Rung> ladder = ladder_of(d);
  for (Rung r : ladder) d.ladder.push_back(rung_name(r, d.bits));
  // --compare-baseline measures every rung, so the scaled int8 estimate is
  // checked against the measurement in the report.
  d.sensitivity = measure_sensitivity(model, d.groups, ladder, quick, p.accuracy.compare_baseline, acts.get());
  std::vector<double> proxy, measured;
  for (const auto& s : d.sensitivity) {
    proxy.push_back(s.proxy);
    measured.push_back(s.kld.front());
  }
  d.spearman_rho = spearman(proxy, measured);
  if (p.accuracy.compare_baseline && ladder.size() > 2) d.scaled_rho = scaled_estimate_rho(d.sensitivity);
  d.seconds.sensitivity = since(t1);

  t1 = Clock::now();
  run_fallbacks(model, d, ladder, quick, p.accuracy, acts.get(), options.shortcuts);
  d.variants.push_back({"auto+fallback", "simulated", d.fallback.steps.back().bytes, d.fallback.steps.back().accuracy});
  d.seconds.fallback = since(t1);
  d.layer_tokens_evaluated = d.evaluator->layer_tokens_run() + (subset ? subset->layer_tokens_run() : 0);
  if (!d.fallback.met) d.notes.push_back("target missed: " + d.fallback.missed);
  d.seconds.total = since(t0);
  return d;
}

RunReport run_automatic(Runtime& rt, Pipeline& p) {
  const auto t0 = Clock::now();
  for (const auto& dir : p.plugin_paths) rt.plugins().load_dir(dir);
  validate_with_plugins(p, rt);
  Decision d = decide(rt, p);
  Pipeline concrete = concrete_pipeline(p, d);
  const std::filesystem::path report = report_path_of(p);
  if (p.explain_only) {
    std::fputs(explain(d).c_str(), stdout);
    if (!report.empty()) write_report(d, report);
    return RunReport{};
  }

  auto t1 = Clock::now();
  RunReport run = run_pipeline(rt, concrete);
  d.written = true;
  d.output = p.output_path;
  d.seconds.write = since(t1);
  if (d.evaluator) {
    ModelOptions mo;
    mo.tokenizer_from = p.calibration.tokenizer;
    // The embedding / lm_head as stored, as the in-memory variants score them
    // (the engine holds a quantized checkpoint's tables as Q8_0 by default:
    // engine/compact_tables.cpp), so the row compares the same weights.
    mo.tables = TableForm::kAsStored;
    auto written = Model::open(rt, p.output_path, mo);
    VariantRow row{d.fallback.steps.size() > 1 ? "auto+fallback" : "auto", "written", checkpoint_bytes(p.output_path),
                   d.evaluator->evaluate(*written)};
    double target = 0;
    if (!meets_target(row.accuracy, d.reference, p.accuracy, &target))
      d.notes.push_back(fmt::format("the written checkpoint misses the target ({} {:.5g} > {:.5g}): the runner "
                                    "quantizes layer by layer on quantized inputs, the decision on float inputs",
                                    p.accuracy.metric, p.accuracy.metric == "ppl" ? row.accuracy.ppl : row.accuracy.kld,
                                    target));
    d.variants.push_back(row);
  }
  d.seconds.total = since(t0);
  write_report(d, report);
  logger().info("decide: report {} (+ .json)", report.string());
  run.seconds = d.seconds.total;
  return run;
}

}  // namespace xquant::decide
