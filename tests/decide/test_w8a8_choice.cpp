// test_w8a8_choice.cpp: a static W8A8 request through `auto`. Groups whose
// input activations have outliers (the case where one static per-tensor
// scale wrecks a model, issue 12's SmolLM2 numbers) get dynamic per-token
// scales, with the statistics as the reason; the W8A8 candidates
// (SmoothQuant, SmoothQuant then GPTQ) are measured beside the weight-only
// ones.
#include "core/runtime.hpp"
#include "decide/decision.hpp"

#include <gtest/gtest.h>

#include <algorithm>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_w8a8_choice {

namespace {
const std::string kShared = XQUANT_SHARED_DIR;
}

TEST(OutlierRule, EachStatisticCanTripIt) {
  std::string why;
  EXPECT_FALSE(decide::activations_have_outliers({0.5, 2.0, 0.0}, &why));
  EXPECT_NE(why.find("max/median channel absmax 2.0"), std::string::npos) << why;
  EXPECT_TRUE(decide::activations_have_outliers({0.5, 50.0, 0.0}, nullptr));
  EXPECT_TRUE(decide::activations_have_outliers({40.0, 2.0, 0.0}, nullptr));
  EXPECT_TRUE(decide::activations_have_outliers({0.5, 2.0, 0.01}, nullptr));
}

TEST(W8A8Static, OutlierGroupsGoDynamicWithEvidence) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  Runtime rt(o);
  Pipeline p = parse_pipeline_text(
      "model: {path: " + kShared + "/models/stories260K-hf}\n"
      "calibration: {text: " + kShared + "/data/tinystories/tinystories_val.subset.txt, tokenizer: " + kShared +
      "/models/stories260K/stories260K.gguf, samples: 8, seq_len: 128}\n"
      "quantize:\n  - algorithm: auto\n    weights: {bits: 8, strategy: channel}\n"
      "    activations: {bits: 8, strategy: tensor}\n"
      "ignore: [lm_head]\noutput: {path: /tmp/unused-decide-w8a8}\n",
      "w8a8.yaml", ".");
  validate_with_plugins(p, rt);
  decide::Decision d = decide::decide(rt, p);
  for (const char* c : {"rtn", "gptq", "smoothquant", "smoothquant+gptq"})
    EXPECT_NE(std::find(d.candidates.begin(), d.candidates.end(), c), d.candidates.end()) << c;
  int dynamic = 0;
  for (const auto& g : d.groups) {
    EXPECT_EQ(g.dynamic_activations, decide::activations_have_outliers(g.activations, nullptr)) << g.name;
    EXPECT_NE(g.activation_why.find(g.dynamic_activations ? "refused" : "kept"), std::string::npos) << g.activation_why;
    dynamic += g.dynamic_activations;
  }
  // stories260K's down_proj inputs are heavy-tailed (excess kurtosis > 10).
  EXPECT_GT(dynamic, 0);
  EXPECT_LT(dynamic, static_cast<int>(d.groups.size()));
}

}  // namespace test_w8a8_choice
