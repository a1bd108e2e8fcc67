// fallback.cpp: see fallback.hpp.
#include "decide/fallback.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <fmt/format.h>

#include <limits>

namespace xquant::decide {

std::string rung_name(Rung r, int bits) {
  switch (r) {
    case Rung::Chosen: return fmt::format("int{}", bits);
    case Rung::Int8: return "int8";
    case Rung::Dense: return "dense";
  }
  return "?";
}

namespace {

const std::vector<std::vector<float>>& rung_weights(const GroupProfile& g, Rung r,
                                                    const std::vector<std::vector<float>>& original) {
  if (r == Rung::Chosen) return g.candidates[static_cast<size_t>(g.chosen)].weights;
  if (r == Rung::Int8) return g.int8.weights;
  return original;
}

// The float weights of every group, read once from the engine.
std::vector<std::vector<std::vector<float>>> float_weights(Model& model, const std::vector<GroupProfile>& groups) {
  std::vector<std::vector<std::vector<float>>> out;
  for (const auto& g : groups) {
    out.emplace_back();
    for (int li : g.linears) out.back().push_back(model.layer(g.layer).linears[static_cast<size_t>(li)].w);
  }
  return out;
}

}  // namespace

uint64_t rung_bytes(const GroupProfile& g, Rung r) {
  if (r == Rung::Chosen) return g.candidates[static_cast<size_t>(g.chosen)].bytes;
  if (r == Rung::Int8) return g.int8.bytes;
  return g.dense_bytes;
}

bool meets_target(const Accuracy& a, const Accuracy& reference, const AccuracySpec& spec, double* target) {
  const double t = spec.metric == "ppl" ? reference.ppl * (1.0 + spec.max_increase) : reference.kld + spec.max_increase;
  if (target) *target = t;
  return (spec.metric == "ppl" ? a.ppl : a.kld) <= t;
}

std::vector<Sensitivity> measure_sensitivity(Model& model, const std::vector<GroupProfile>& groups,
                                             const std::vector<Rung>& ladder, const HeldOutEvaluator& eval) {
  const auto original = float_weights(model, groups);
  std::vector<Sensitivity> out(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    const GroupProfile& g = groups[i];
    out[i].proxy = g.candidates[static_cast<size_t>(g.chosen)].output_error;
    for (Rung r : ladder) {
      if (r == Rung::Dense) {
        out[i].measured_kld.push_back(0.0);
        continue;
      }
      set_group_weights(model, g, rung_weights(g, r, original[i]));
      out[i].measured_kld.push_back(eval.evaluate(model).kld);
      set_group_weights(model, g, original[i]);
    }
    logger().info("decide: sensitivity {}: measured KLD {:.5f} (alone at rung 0), proxy {:.4g}", g.name,
                  out[i].measured_kld[0], out[i].proxy);
  }
  return out;
}

FallbackResult fall_back(Model& model, const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                         const std::vector<Sensitivity>& sensitivity, const HeldOutEvaluator& eval,
                         const AccuracySpec& spec) {
  const auto original = float_weights(model, groups);
  FallbackResult res;
  res.ladder = ladder;
  res.rung_of_group.assign(groups.size(), 0);
  auto evaluate_current = [&](const std::string& moved, const std::string& to) {
    for (size_t i = 0; i < groups.size(); ++i)
      set_group_weights(model, groups[i], rung_weights(groups[i], ladder[res.rung_of_group[i]], original[i]));
    FallbackStep s;
    s.moved = moved;
    s.to = to;
    for (size_t i = 0; i < groups.size(); ++i) s.bytes += rung_bytes(groups[i], ladder[res.rung_of_group[i]]);
    s.accuracy = eval.evaluate(model);
    s.meets = meets_target(s.accuracy, eval.reference_accuracy(), spec, &res.target);
    logger().info("decide: fallback step {}{}: {} bytes, ppl {:.4f}, KLD {:.5f}{}", res.steps.size(),
                  moved.empty() ? "" : " (" + moved + " -> " + to + ")", s.bytes, s.accuracy.ppl, s.accuracy.kld,
                  s.meets ? " (target met)" : "");
    res.steps.push_back(s);
    return s.meets;
  };
  bool met = evaluate_current("", "");
  while (!met) {
    // Greedy by damage removed per extra byte (measured alone, rung by rung).
    int best = -1;
    double best_score = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < groups.size(); ++i) {
      const int k = res.rung_of_group[i];
      if (k + 1 >= static_cast<int>(ladder.size())) continue;
      const double gain = sensitivity[i].measured_kld[k] - sensitivity[i].measured_kld[k + 1];
      const double cost = static_cast<double>(rung_bytes(groups[i], ladder[k + 1])) -
                          static_cast<double>(rung_bytes(groups[i], ladder[k]));
      const double score = gain / std::max(cost, 1.0);
      if (score > best_score) {
        best_score = score;
        best = static_cast<int>(i);
      }
    }
    if (best < 0) break;  // every group at the top of the ladder
    const int to = ++res.rung_of_group[static_cast<size_t>(best)];
    met = evaluate_current(groups[static_cast<size_t>(best)].name, rung_name(ladder[to], 0));
  }
  res.met = met;
  if (!met) {
    const auto& last = res.steps.back().accuracy;
    res.missed = fmt::format("{} {:.5g} > target {:.5g} with every group at the top of the ladder",
                             spec.metric, spec.metric == "ppl" ? last.ppl : last.kld, res.target);
  }
  // The engine holds the float model again (what the written checkpoint is
  // made from is the runner's business).
  for (size_t i = 0; i < groups.size(); ++i) set_group_weights(model, groups[i], original[i]);
  return res;
}

}  // namespace xquant::decide
