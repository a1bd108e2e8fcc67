// fallback.cpp: see fallback.hpp.
#include "decide/fallback.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <xquant/sdk/half.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <map>

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

// `dense`: the group's weights at the top rung (BF16-rounded float).
const std::vector<std::vector<float>>& rung_weights(const GroupProfile& g, Rung r,
                                                    const std::vector<std::vector<float>>& dense) {
  if (r == Rung::Chosen) return g.candidates[static_cast<size_t>(g.chosen)].weights;
  if (r == Rung::Int8) return g.int8.weights;
  return dense;
}

// The dense rung as written: every weight rounded to BF16 (round to nearest
// even, as the writer converts it), so that what is evaluated is what is
// stored.
std::vector<std::vector<std::vector<float>>> bf16_rounded(std::vector<std::vector<std::vector<float>>> w) {
  for (auto& group : w)
    for (auto& linear : group)
      for (float& x : linear) x = sdk::round_to_bf16(x);
  return w;
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
                                             const std::vector<Rung>& ladder, const HeldOutEvaluator& eval,
                                             bool measure_every_rung, ActivationSimulation* acts) {
  const auto original = float_weights(model, groups);
  std::vector<Sensitivity> out(groups.size());
  auto measure = [&](size_t i, Rung r, const std::vector<std::vector<float>>& float_w) {
    const GroupProfile& g = groups[i];
    set_group_weights(model, g, rung_weights(g, r, float_w));
    if (acts && r == Rung::Chosen) acts->as_chosen(i);
    const double kld = eval.evaluate_from(model, g.layer, g.group >= LayerDesc::kMlpIn).kld;
    set_group_weights(model, g, float_w);
    if (acts) acts->as_float(i);
    return kld;
  };
  for (size_t i = 0; i < groups.size(); ++i) {
    const GroupProfile& g = groups[i];
    Sensitivity& s = out[i];
    const CandidateResult& chosen = g.candidates[static_cast<size_t>(g.chosen)];
    s.proxy = chosen.output_error;
    for (size_t k = 0; k < ladder.size(); ++k) {
      const Rung r = ladder[k];
      if (r == Rung::Dense) {
        s.kld.push_back(0.0);
        s.measured.push_back(true);
        s.scaled.push_back(0.0);
      } else if (k == 0) {
        s.kld.push_back(measure(i, r, original[i]));
        s.measured.push_back(true);
        s.scaled.push_back(s.kld.back());
      } else {
        const double ratio = chosen.output_error > 0 ? g.int8.output_error / chosen.output_error : 0.0;
        s.scaled.push_back(s.kld.front() * ratio);
        const bool measure_it = measure_every_rung || chosen.output_error <= 0;
        s.kld.push_back(measure_it ? measure(i, r, original[i]) : s.scaled.back());
        s.measured.push_back(measure_it);
      }
    }
    logger().info("decide: sensitivity {}: measured KLD {:.5f} (alone at rung 0), proxy {:.4g}", g.name, s.kld.front(),
                  s.proxy);
  }
  return out;
}

double scaled_estimate_rho(const std::vector<Sensitivity>& sensitivity) {
  std::vector<double> scaled, measured;
  for (const auto& s : sensitivity)
    for (size_t k = 1; k + 1 < s.kld.size(); ++k)
      if (s.measured[k]) {
        scaled.push_back(s.scaled[k]);
        measured.push_back(s.kld[k]);
      }
  return spearman(scaled, measured);
}

std::vector<RungCosts> rung_costs(const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                                  const std::vector<Sensitivity>& sensitivity) {
  std::vector<RungCosts> out(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    for (size_t k = 0; k < ladder.size(); ++k) {
      out[i].bytes.push_back(rung_bytes(groups[i], ladder[k]));
      out[i].damage.push_back(i < sensitivity.size() && k < sensitivity[i].kld.size() ? sensitivity[i].kld[k] : 0.0);
    }
    out[i].weight_error = groups[i].candidates[static_cast<size_t>(groups[i].chosen)].rel_weight_error;
  }
  return out;
}

namespace {

// "3 groups up: a -> int8, b -> dense, ..." (the first few named).
std::string describe(const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                     const std::vector<int>& rung) {
  std::vector<std::string> moved;
  for (size_t i = 0; i < groups.size(); ++i)
    if (rung[i] > 0) moved.push_back(groups[i].name + " -> " + rung_name(ladder[static_cast<size_t>(rung[i])], 0));
  if (moved.empty()) return "";
  constexpr size_t kNamed = 4;
  std::string s = fmt::format("{} group{} up: ", moved.size(), moved.size() == 1 ? "" : "s");
  for (size_t k = 0; k < std::min(moved.size(), kNamed); ++k) s += (k ? ", " : "") + moved[k];
  if (moved.size() > kNamed) s += fmt::format(", ... ({} more)", moved.size() - kNamed);
  return s;
}

}  // namespace

FallbackResult fall_back(Model& model, const std::vector<GroupProfile>& groups, const std::vector<Rung>& ladder,
                         const std::vector<Allocation>& path, const std::string& method, const HeldOutEvaluator& quick,
                         const HeldOutEvaluator& full, const AccuracySpec& spec, const Accuracy* start,
                         EvaluationMemo* memo, ActivationSimulation* acts) {
  if (path.empty()) fail(XQ_ERR_INTERNAL, "fallback: empty allocation path");
  const auto original = float_weights(model, groups);
  const auto dense = bf16_rounded(original);
  FallbackResult res;
  res.method = method;
  res.ladder = ladder;
  res.path_length = path.size();
  meets_target(full.reference_accuracy(), full.reference_accuracy(), spec, &res.target);
  std::map<size_t, FallbackStep> probes, steps;
  auto evaluate = [&](size_t k, const HeldOutEvaluator& eval, std::map<size_t, FallbackStep>& seen,
                      const Accuracy* known) -> const FallbackStep& {
    auto it = seen.find(k);
    if (it != seen.end()) return it->second;
    FallbackStep s;
    s.path_index = k;
    s.rung = path[k].rung;
    s.moved = describe(groups, ladder, s.rung);
    for (size_t i = 0; i < groups.size(); ++i) {
      const Rung r = ladder[static_cast<size_t>(s.rung[i])];
      s.bytes += rung_bytes(groups[i], r);
      if (r == Rung::Dense) s.dense_bytes += groups[i].dense_bytes;
    }
    // The memo's map for this evaluator (the quick and the full one may be one).
    std::map<std::vector<int>, Accuracy>* remembered = !memo ? nullptr : &eval == &full ? &memo->full : &memo->quick;
    auto hit = remembered ? remembered->find(s.rung) : std::map<std::vector<int>, Accuracy>::iterator{};
    if (known) {
      s.accuracy = *known;
    } else if (remembered && hit != remembered->end()) {
      s.accuracy = hit->second;
      ++memo->reused;
    } else {
      for (size_t i = 0; i < groups.size(); ++i) {
        const Rung r = ladder[static_cast<size_t>(s.rung[i])];
        set_group_weights(model, groups[i], rung_weights(groups[i], r, dense[i]));
        if (acts && r == Rung::Chosen) acts->as_chosen(i);
        else if (acts) acts->as_float(i);
      }
      // The same allocation probed on the subset: only the other windows run.
      const Accuracy* on_subset = nullptr;
      if (memo && memo->join_subset && &eval == &full && quick.is_part_of(full)) {
        auto p = probes.find(k);
        auto q = memo->quick.find(s.rung);
        on_subset = p != probes.end() ? &p->second.accuracy : q != memo->quick.end() ? &q->second : nullptr;
      }
      s.accuracy = on_subset ? full.evaluate_knowing(model, quick, *on_subset) : eval.evaluate(model);
    }
    if (remembered) remembered->emplace(s.rung, s.accuracy);
    s.meets = meets_target(s.accuracy, eval.reference_accuracy(), spec, nullptr);
    s.excess = spec.metric == "ppl" ? s.accuracy.ppl / eval.reference_accuracy().ppl - 1.0
                                    : s.accuracy.kld - eval.reference_accuracy().kld;
    logger().info("decide: fallback ({}, {} tokens) {}/{}: {} bytes, ppl {:.4f}, KLD {:.5f}{}", method, eval.tokens(),
                  k, path.size() - 1, s.bytes, s.accuracy.ppl, s.accuracy.kld, s.meets ? " (target met)" : "");
    return seen.emplace(k, std::move(s)).first->second;
  };
  // The first index in [lo, hi] meeting the target on `eval`, given that hi
  // meets it and lo does not (bisection: the path rises in bytes, and the
  // damage falls along it).
  auto bisect = [&](size_t lo, size_t hi, const HeldOutEvaluator& eval, std::map<size_t, FallbackStep>& seen) {
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      if (evaluate(mid, eval, seen, nullptr).meets) hi = mid;
      else lo = mid;
    }
    return hi;
  };
  const size_t last = path.size() - 1;
  // Stopped on the subset at path index k (FallbackResult::settled): the
  // start's full evaluation (known) and the probes are kept for the report.
  auto settle = [&](size_t k, std::string why) {
    res.final_on_subset = probes.at(k);
    res.settled = std::move(why);
    logger().info("decide: fallback ({}) {}", method, res.settled);
    evaluate(0, full, steps, start);
    res.rung_of_group = path[k].rung;
    for (auto& [i, s] : probes) res.probes.push_back(s);
    for (auto& [i, s] : steps) res.steps.push_back(s);
    for (size_t i = 0; i < groups.size(); ++i) set_group_weights(model, groups[i], original[i]);
    if (acts) acts->all_float();
    return res;
  };
  // Quick probes first (skipped when the quick and the full set are one).
  size_t guess = 0;
  if (&quick != &full) {
    if (!evaluate(0, quick, probes, nullptr).meets) {
      // An earlier method's result confirmed at settled_bytes: first the
      // last allocation within those bytes; when it misses on the subset,
      // this path's cheapest meeting allocation lies above them (the
      // bisection's own assumption: the damage falls along the path), so
      // this method cannot be the one written.
      size_t top = last;
      if (memo && memo->settled_bytes != std::numeric_limits<uint64_t>::max()) {
        size_t cap = 0;
        while (cap < last && path[cap + 1].bytes <= memo->settled_bytes) ++cap;
        if (cap > 0 && cap < last) {
          if (!evaluate(cap, quick, probes, nullptr).meets) {
            return settle(cap, fmt::format("not confirmed on every token: at {} bytes, its last allocation within "
                                           "{}'s {} confirmed on all {}, it misses the target on the {}-token subset, "
                                           "so it cannot be the one written",
                                           probes.at(cap).bytes, memo->settled_by, memo->settled_bytes, full.tokens(),
                                           quick.tokens()));
          }
          top = cap;
        }
      }
      guess = evaluate(top, quick, probes, nullptr).meets ? bisect(0, top, quick, probes) : last;
    }
  }
  // Then the full set: the start, the guess, and further up while it misses.
  size_t final_index = 0;
  const bool start_meets = evaluate(0, full, steps, start).meets;
  // Settled: every allocation this method could confirm takes at least the
  // guess's bytes (the path rises in bytes, and the search only climbs from
  // the guess), more than a result already confirmed.
  if (!start_meets && guess > 0 && memo && probes.at(guess).bytes > memo->settled_bytes)
    return settle(guess, fmt::format("not confirmed on every token: its cheapest allocation meeting the target on the "
                                     "{}-token subset takes {} bytes, more than {}'s {} confirmed on all {}, so it "
                                     "cannot be the one written",
                                     quick.tokens(), probes.at(guess).bytes, memo->settled_by, memo->settled_bytes,
                                     full.tokens()));
  if (!start_meets) {
    if (guess > 0 && evaluate(guess, full, steps, nullptr).meets) {
      final_index = guess;
    } else if (evaluate(last, full, steps, nullptr).meets) {
      final_index = bisect(guess, last, full, steps);
    } else {
      final_index = last;
    }
  }
  res.met = steps.at(final_index).meets;
  res.rung_of_group = path[final_index].rung;
  for (auto& [k, s] : probes) res.probes.push_back(s);
  for (auto& [k, s] : steps) res.steps.push_back(s);
  // The final allocation last (the written configuration).
  std::stable_partition(res.steps.begin(), res.steps.end(),
                        [&](const FallbackStep& s) { return s.path_index != final_index; });
  if (!res.met) {
    const auto& a = res.steps.back().accuracy;
    res.missed = fmt::format("{} {:.5g} > target {:.5g} with every group at the top of the ladder", spec.metric,
                             spec.metric == "ppl" ? a.ppl : a.kld, res.target);
  }
  // The engine holds the float model again (what the written checkpoint is
  // made from is the runner's business).
  for (size_t i = 0; i < groups.size(); ++i) set_group_weights(model, groups[i], original[i]);
  if (acts) acts->all_float();
  return res;
}

}  // namespace xquant::decide
