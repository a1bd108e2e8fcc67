// test_never_worse.cpp: `auto` never keeps a configuration it measured worse
// than another. The per-group choice is made on calibration data; with too
// little of it (8 x 128 tokens of stories260K) GPTQ fits each group's
// calibration Hessian best and the per-group mix scores worse end to end
// than AWQ everywhere (docs/results.md, "Decision engine"). Every fixed
// candidate is also evaluated end to end on the held-out text (ranked on a
// subset, the two best on every token), so the decision must end at least
// as good as the best of them on the target's metric.
#include "core/runtime.hpp"
#include "decide/decision.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_never_worse {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;

decide::Decision decide_with(const std::string& metric) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  static Runtime rt(o);
  Pipeline p = parse_pipeline_text(
      "model: {path: " + kShared + "/models/stories260K-hf}\n"
      "calibration: {text: " + kShared + "/data/tinystories/tinystories_val.subset.txt, tokenizer: " + kShared +
      "/models/stories260K/stories260K.gguf, samples: 8, seq_len: 128}\n"
      "quantize:\n  - algorithm: auto\n    weights: {bits: 4, group_size: 32}\n"
      "ignore: [lm_head]\n"
      // A target far away and no ladder: only the choice of algorithms is tested.
      "accuracy: {text: " + kShared + "/data/wikitext-2-raw/wiki.test.raw, metric: " + metric +
      ", max_increase: 100, fallback: [], max_tokens: 4096}\n"
      "output: {path: /tmp/unused-decide-never-worse}\n",
      "never-worse.yaml", ".");
  validate_with_plugins(p, rt);
  return decide::decide(rt, p);
}

// The candidates are ranked on the 2,048-token evaluation subset; the two
// best are evaluated on all 4,096 tokens and `auto` is the better of them.
void expect_never_worse(const decide::Decision& d, bool by_kld) {
  auto value = [&](const decide::Accuracy& a) { return by_kld ? a.kld : a.ppl; };
  const decide::VariantRow* chosen = nullptr;
  for (const auto& v : d.variants)
    if (v.name == "auto") chosen = &v;
  ASSERT_NE(chosen, nullptr);
  const uint64_t all = chosen->accuracy.positions;
  std::vector<const decide::VariantRow*> confirmed, subset;
  for (const auto& v : d.variants) {
    if (v.source != "simulated" || v.name == "auto" || v.name == "auto+fallback") continue;
    (v.accuracy.positions == all ? confirmed : subset).push_back(&v);
  }
  ASSERT_EQ(confirmed.size(), 2u) << "the two best on the subset are confirmed on every token";
  ASSERT_GE(subset.size(), 3u);
  EXPECT_LT(subset.front()->accuracy.positions, all);
  for (const auto* v : confirmed) EXPECT_LE(value(chosen->accuracy), value(v->accuracy)) << "auto is worse than " << v->name;
  // Those left out scored worse on the subset than both confirmed ones.
  double worst_confirmed = -1;
  for (const auto* c : confirmed)
    for (const auto* s : subset)
      if (s->name == c->name) worst_confirmed = std::max(worst_confirmed, value(s->accuracy));
  ASSERT_GE(worst_confirmed, 0);
  for (const auto* s : subset) {
    bool was_confirmed = false;
    for (const auto* c : confirmed) was_confirmed = was_confirmed || c->name == s->name;
    if (!was_confirmed) {
      EXPECT_GE(value(s->accuracy), worst_confirmed) << s->name;
    }
  }
  // The fallback starts from the chosen configuration: its first step is it.
  ASSERT_FALSE(d.fallback.steps.empty());
  EXPECT_DOUBLE_EQ(value(d.fallback.steps.front().accuracy), value(chosen->accuracy));
}

}  // namespace

TEST(NeverWorse, AutoEndsAtLeastAsGoodAsTheBestFixedCandidateByKld) { expect_never_worse(decide_with("kld"), true); }

TEST(NeverWorse, AutoEndsAtLeastAsGoodAsTheBestFixedCandidateByPerplexity) {
  expect_never_worse(decide_with("ppl"), false);
}

}  // namespace test_never_worse
