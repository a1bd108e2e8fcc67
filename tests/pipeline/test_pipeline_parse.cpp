// test_pipeline_parse.cpp: the YAML schema: every error names file, line,
// column and key; unknown keys get the nearest valid key; all problems are
// reported at once; valid files become the plan we expect.
#include "core/error.hpp"
#include "pipeline/pipeline.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace xquant;

namespace {

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";

std::string error_of(const std::string& yaml) {
  try {
    parse_pipeline_text(yaml, "p.yaml", ".");
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    return e.what();
  }
  return "";
}

std::string valid(const std::string& extra = "") {
  return "model: {path: " + kModel + "}\n" +
         "quantize:\n  - algorithm: rtn\n    weights: {bits: 4, group_size: 32}\n" + extra +
         "output: {path: /tmp/xquant-test-out}\n";
}

}  // namespace

TEST(PipelineParse, ValidPipelineBecomesAPlan) {
  Pipeline p = parse_pipeline_text(valid("ignore: [lm_head, 're:.*down_proj']\n"), "p.yaml", ".");
  ASSERT_EQ(p.rules.size(), 1u);
  ASSERT_EQ(p.rules[0].stages.size(), 1u);
  EXPECT_EQ(p.rules[0].stages[0].name, "rtn");
  EXPECT_EQ(p.rules[0].weights.bits, 4);
  EXPECT_EQ(p.rules[0].weights.strategy, XQ_STRATEGY_GROUP);
  EXPECT_EQ(p.rules[0].weights.group_size, 32);
  EXPECT_TRUE(p.rules[0].weights.symmetric);
  ASSERT_EQ(p.rules[0].targets.size(), 1u);  // default: Linear
  EXPECT_TRUE(p.rules[0].targets[0].is_class);
  EXPECT_EQ(p.output_format, "compressed-tensors");
  ASSERT_EQ(p.ignore.size(), 2u);
  EXPECT_TRUE(p.ignore[0].matches("lm_head"));
  EXPECT_FALSE(p.ignore[0].matches("lm_head2"));
  EXPECT_TRUE(p.ignore[1].matches("model.layers.3.mlp.down_proj"));
}

TEST(PipelineParse, RegexTargetsMatchFromTheStartLikePythonReMatch) {
  Pipeline p = parse_pipeline_text(valid("ignore: ['re:model\\.layers\\.1\\.']\n"), "p.yaml", ".");
  EXPECT_TRUE(p.ignore[0].matches("model.layers.1.mlp.up_proj"));
  EXPECT_FALSE(p.ignore[0].matches("x.model.layers.1.mlp.up_proj"));  // anchored at the start
  EXPECT_FALSE(p.ignore[0].matches("model.layers.10.mlp.up_proj"));
}

TEST(PipelineParse, UnknownKeyNamesLineColumnAndNearestKey) {
  std::string e = error_of("model: {path: " + kModel + "}\nquantize:\n  - algorithm: rtn\n    wieghts: {bits: 4}\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("p.yaml:4:5: quantize[0].wieghts: unknown key 'wieghts'; did you mean 'weights'?"), std::string::npos) << e;
}

TEST(PipelineParse, AllProblemsAreReportedTogether) {
  std::string e = error_of("model: {path: " + kModel + "}\nquantize:\n  - algorithm: rtn\n    weights: {bits: 9, symmetric: maybe}\noutput: {path: /tmp/o}\nouptut: 3\n");
  EXPECT_NE(e.find("3 problems"), std::string::npos) << e;
  EXPECT_NE(e.find("quantize[0].weights.bits: must be between 2 and 8, got 9"), std::string::npos) << e;
  EXPECT_NE(e.find("quantize[0].weights.symmetric: expected true or false, got 'maybe'"), std::string::npos) << e;
  EXPECT_NE(e.find("p.yaml:6:1: ouptut: unknown key 'ouptut'; did you mean 'output'?"), std::string::npos) << e;
}

TEST(PipelineParse, TypeErrorsNameTheKey) {
  std::string e = error_of(valid().replace(valid().find("bits: 4"), 7, "bits: four"));
  EXPECT_NE(e.find("quantize[0].weights.bits: expected an integer, got 'four'"), std::string::npos) << e;
}

TEST(PipelineParse, GroupStrategyNeedsGroupSize) {
  std::string e = error_of("model: {path: " + kModel + "}\nquantize: [{algorithm: rtn, weights: {bits: 4, strategy: group}}]\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("strategy 'group' needs 'group_size'"), std::string::npos) << e;
  e = error_of("model: {path: " + kModel + "}\nquantize: [{algorithm: rtn, weights: {bits: 4, strategy: channel, group_size: 8}}]\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("group_size only applies to strategy 'group'"), std::string::npos) << e;
}

TEST(PipelineParse, BadRegexIsReportedWithItsPosition) {
  std::string e = error_of(valid("ignore: ['re:model.(layers']\n"));
  EXPECT_NE(e.find("p.yaml:5:10: ignore[0]: invalid regular expression 'model.(layers'"), std::string::npos) << e;
}

TEST(PipelineParse, MissingSectionsAndMissingModel) {
  std::string e = error_of("model: {path: /nonexistent/model}\n");
  EXPECT_NE(e.find("missing 'quantize'"), std::string::npos) << e;
  EXPECT_NE(e.find("missing 'output'"), std::string::npos) << e;
  EXPECT_NE(e.find("model.path: '/nonexistent/model' does not exist"), std::string::npos) << e;
}

TEST(PipelineParse, SyntaxErrorHasPosition) {
  std::string e = error_of("model: {path: x\nquantize: [\n");
  EXPECT_NE(e.find("p.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;
}

TEST(PipelineParse, ChoicesSuggestTheNearest) {
  std::string e = error_of(valid().replace(valid().find("group_size: 32"), 14, "strategy: chanel"));
  EXPECT_NE(e.find("'chanel' is not one of: tensor, channel, group (did you mean 'channel'?)"), std::string::npos) << e;
}

TEST(PipelineParse, W8A8NeedsEightBitWeights) {
  std::string e = error_of("model: {path: " + kModel + "}\nquantize: [{algorithm: rtn, weights: {bits: 4}, activations: {bits: 8}}]\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("activation quantization (W8A8) needs 8-bit weights"), std::string::npos) << e;
}

TEST(PipelineParse, OutputMustNotOverwriteTheModel) {
  std::string e = error_of("model: {path: " + kModel + "}\nquantize: [{algorithm: rtn, weights: {bits: 4}}]\noutput: {path: " + kModel + "}\n");
  EXPECT_NE(e.find("must not be the model's own folder"), std::string::npos) << e;
}

TEST(PipelineParse, AlgorithmChainsTakeParamsPerStage) {
  Pipeline p = parse_pipeline_text("model: {path: " + kModel + "}\nquantize:\n  - algorithm: [smoothquant, gptq]\n"
                                   "    weights: {bits: 8}\n    params: {smoothquant: {alpha: 0.8}, gptq: {act_order: true}}\n"
                                   "output: {path: /tmp/o}\n", "p.yaml", ".");
  ASSERT_EQ(p.rules[0].stages.size(), 2u);
  EXPECT_EQ(p.rules[0].algorithm_names(), "smoothquant+gptq");
  EXPECT_EQ(p.rules[0].stages[0].params["alpha"].as<double>(), 0.8);
  EXPECT_TRUE(p.rules[0].stages[1].params["act_order"].as<bool>());
  std::string e = error_of("model: {path: " + kModel + "}\nquantize:\n  - algorithm: [smoothquant, gptq]\n"
                           "    weights: {bits: 8}\n    params: {gtpq: {}}\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("quantize[0].params.gtpq: unknown key 'gtpq'; did you mean 'gptq'?"), std::string::npos) << e;
}

TEST(PipelineParse, MoeExpertsPerPass) {
  const std::string text = std::string(XQUANT_SHARED_DIR) + "/data/tinystories/tinystories_val.subset.txt";
  auto with_moe = [&](const std::string& moe) {
    return valid("calibration: {text: " + text + (moe.empty() ? "" : ", moe: " + moe) + "}\n");
  };
  EXPECT_EQ(parse_pipeline_text(with_moe(""), "p.yaml", ".").calibration.moe.experts_per_pass, 16);
  EXPECT_EQ(parse_pipeline_text(with_moe("{experts_per_pass: 4}"), "p.yaml", ".").calibration.moe.experts_per_pass, 4);
  EXPECT_EQ(parse_pipeline_text(with_moe("{experts_per_pass: 0}"), "p.yaml", ".").calibration.moe.experts_per_pass, 0);
  const std::string e = error_of(with_moe("{experts_per_pass: -1}"));
  EXPECT_NE(e.find("p.yaml:5:"), std::string::npos) << e;  // the calibration line
  EXPECT_NE(e.find("calibration.moe.experts_per_pass: must be between 0 and"), std::string::npos) << e;
  EXPECT_NE(error_of(with_moe("{expert_per_pass: 4}")).find("did you mean 'experts_per_pass'?"), std::string::npos);
}
