// test_never_worse.cpp: `auto` never keeps a configuration it measured worse
// than another. The per-group choice is made on calibration data; with too
// little of it (8 x 128 tokens of stories260K) GPTQ fits each group's
// calibration Hessian best and the per-group mix scores worse end to end
// than AWQ everywhere (docs/results.md, "Decision engine"). Every fixed
// candidate is also evaluated end to end on the held-out text, so the
// decision must end at least as good as the best of them on the target's
// metric, and its groups must say which algorithm that is.
#include "core/runtime.hpp"
#include "decide/decision.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

using namespace xquant;

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
      ", max_increase: 100, fallback: [], max_tokens: 1024}\n"
      "output: {path: /tmp/unused-decide-never-worse}\n",
      "never-worse.yaml", ".");
  validate_with_plugins(p, rt);
  return decide::decide(rt, p);
}

void expect_never_worse(const decide::Decision& d, bool by_kld) {
  auto value = [&](const decide::Accuracy& a) { return by_kld ? a.kld : a.ppl; };
  double best_fixed = std::numeric_limits<double>::infinity();
  std::string best_name;
  const decide::VariantRow* chosen = nullptr;
  for (const auto& v : d.variants) {
    if (v.source != "simulated") continue;
    if (std::find(d.candidates.begin(), d.candidates.end(), v.name) != d.candidates.end() &&
        value(v.accuracy) < best_fixed) {
      best_fixed = value(v.accuracy);
      best_name = v.name;
    }
    if (v.name == "auto") chosen = &v;
  }
  ASSERT_NE(chosen, nullptr);
  ASSERT_FALSE(best_name.empty());
  EXPECT_LE(value(chosen->accuracy), best_fixed) << "auto is worse than " << best_name << " everywhere";
  // The fallback starts from the chosen configuration: its first step is it.
  ASSERT_FALSE(d.fallback.steps.empty());
  EXPECT_DOUBLE_EQ(value(d.fallback.steps.front().accuracy), value(chosen->accuracy));
}

}  // namespace

TEST(NeverWorse, AutoEndsAtLeastAsGoodAsTheBestFixedCandidateByKld) { expect_never_worse(decide_with("kld"), true); }

TEST(NeverWorse, AutoEndsAtLeastAsGoodAsTheBestFixedCandidateByPerplexity) {
  expect_never_worse(decide_with("ppl"), false);
}
