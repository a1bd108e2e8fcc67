// test_layers_on_demand.cpp: the decision's profile with the float model
// held one layer at a time (ModelOptions::layers_on_demand, as the
// calibrated runner opens it) decides exactly what it decides with the
// whole model in memory: the same groups, the same choice per group, the
// same measured output error of every candidate (the same F32 weights
// through the same arithmetic). And it holds less: its peak of F32 weight
// bytes stays below the whole model's. stories260K at W4 g32, every
// weight-only candidate (rtn, awq, gptq), no accuracy section (the case in
// which decide() holds layers on demand by itself).
#include "core/runtime.hpp"
#include "core/error.hpp"
#include "decide/decision.hpp"

#include <gtest/gtest.h>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_layers_on_demand {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;

Pipeline profile_only_pipeline() {
  return parse_pipeline_text(
      "model: {path: " + kShared + "/models/stories260K-hf}\n"
      "calibration: {text: " + kShared + "/data/tinystories/tinystories_val.subset.txt, tokenizer: " + kShared +
      "/models/stories260K/stories260K.gguf, samples: 4, seq_len: 64}\n"
      "quantize:\n  - algorithm: auto\n    weights: {bits: 4, group_size: 32}\n"
      "ignore: [lm_head]\n"
      "output: {path: /tmp/unused-decide-on-demand}\n",
      "on-demand.yaml", ".");
}

}  // namespace

TEST(DecideLayersOnDemand, SameDecisionAsTheWholeModelInMemory) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  Runtime rt(o);
  Pipeline p = profile_only_pipeline();
  validate_with_plugins(p, rt);
  decide::DecideOptions in_memory;
  in_memory.layers_on_demand = false;
  const decide::Decision whole = decide::decide(rt, p, in_memory);
  const decide::Decision on_demand = decide::decide(rt, p);  // no accuracy section: on demand
  ASSERT_TRUE(on_demand.float_model->layers_on_demand());
  ASSERT_FALSE(whole.float_model->layers_on_demand());

  ASSERT_EQ(whole.groups.size(), on_demand.groups.size());
  ASSERT_EQ(whole.groups.size(), 20u);  // 5 layers x (qkv, o, gate/up, down)
  for (size_t i = 0; i < whole.groups.size(); ++i) {
    const auto& a = whole.groups[i];
    const auto& b = on_demand.groups[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.modules, b.modules);
    ASSERT_EQ(a.candidates.size(), 3u) << a.name;
    ASSERT_EQ(b.candidates.size(), a.candidates.size()) << b.name;
    EXPECT_EQ(a.candidates[a.chosen].algorithm, b.candidates[b.chosen].algorithm) << a.name;
    for (size_t k = 0; k < a.candidates.size(); ++k) {
      EXPECT_EQ(a.candidates[k].algorithm, b.candidates[k].algorithm);
      EXPECT_TRUE(a.candidates[k].ok && b.candidates[k].ok) << a.name << " " << a.candidates[k].algorithm;
      EXPECT_EQ(a.candidates[k].output_error, b.candidates[k].output_error) << a.name << " " << a.candidates[k].algorithm;
      EXPECT_EQ(a.candidates[k].bytes, b.candidates[k].bytes) << a.name << " " << a.candidates[k].algorithm;
      EXPECT_TRUE(b.candidates[k].weights.empty()) << "weights kept without an evaluation to use them";
    }
  }
  // One layer (and the embeddings at the start) at a time, not all of them.
  EXPECT_GT(whole.float_model->float_weight_bytes(), 0u);
  EXPECT_LT(on_demand.float_model->peak_float_weight_bytes(), whole.float_model->float_weight_bytes());
  // After the profile only the final norm is left (64 floats).
  EXPECT_LE(on_demand.float_model->float_weight_bytes(), 64u * 4u) << "every layer released after the profile";
}

TEST(DecideLayersOnDemand, RefusedWithAnAccuracySection) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  Runtime rt(o);
  Pipeline p = profile_only_pipeline();
  p.accuracy.enabled = true;
  try {
    decide::DecideOptions on_demand;
    on_demand.layers_on_demand = true;
    decide::decide(rt, p, on_demand);
    FAIL() << "layers on demand with an accuracy section must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("accuracy section"), std::string::npos) << e.what();
  }
}

}  // namespace test_layers_on_demand
