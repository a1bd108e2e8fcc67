// test_fp8_parse.cpp: `type: float` (FP8 E4M3) in a pipeline's weights and
// activations: the plan and the xq_quant_scheme it becomes, and every
// combination the pipeline refuses, named by file, line and key.
#include "core/error.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/stages.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_fp8_parse {

namespace {

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";

std::string rule(const std::string& body) {
  return "model: {path: " + kModel + "}\nquantize:\n  - algorithm: rtn\n" + body + "output: {path: /tmp/xquant-fp8-out}\n";
}

std::string error_of(const std::string& yaml) {
  try {
    parse_pipeline_text(yaml, "p.yaml", ".");
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Fp8Parse, Fp8DynamicBecomesFloatCodesForWeightsAndActivations) {
  Pipeline p = parse_pipeline_text(rule("    weights: {type: float, bits: 8}\n    activations: {bits: 8, strategy: token}\n"),
                                   "p.yaml", ".");
  const QuantRule& r = p.rules.at(0);
  EXPECT_EQ(r.weights.type, "float");
  EXPECT_EQ(r.weights.strategy, XQ_STRATEGY_CHANNEL);
  EXPECT_EQ(r.activations.type, "float");  // the weights' type
  const xq_quant_scheme s = scheme_of(r.weights, r.activations, 64, XQ_DTYPE_BF16);
  EXPECT_EQ(s.bits, XQ_BITS_F8_E4M3);
  EXPECT_EQ(s.act_scheme, XQ_ACT_DYNAMIC_TOKEN);
  EXPECT_EQ(s.act_bits, XQ_BITS_F8_E4M3);
  EXPECT_EQ(s.scale_dtype, XQ_DTYPE_BF16);
  // Integer rules are unchanged.
  Pipeline i = parse_pipeline_text(rule("    weights: {bits: 8}\n    activations: {bits: 8, strategy: token}\n"), "p.yaml", ".");
  const xq_quant_scheme si = scheme_of(i.rules[0].weights, i.rules[0].activations, 64, XQ_DTYPE_F32);
  EXPECT_EQ(si.bits, 8u);
  EXPECT_EQ(si.act_bits, 8u);
  Pipeline t = parse_pipeline_text(rule("    weights: {type: float, bits: 8, strategy: tensor}\n"), "p.yaml", ".");
  EXPECT_EQ(t.rules[0].weights.strategy, XQ_STRATEGY_TENSOR);
  EXPECT_FALSE(t.rules[0].activations.enabled);
}

TEST(Fp8Parse, RefusedCombinationsNameTheKey) {
  const std::string bits4 = error_of(rule("    weights: {type: float, bits: 4}\n"));
  EXPECT_NE(bits4.find("p.yaml:4:14: quantize[0].weights:"), std::string::npos) << bits4;
  EXPECT_NE(bits4.find("type 'float' weights are FP8 (E4M3): bits must be 8, not 4"), std::string::npos) << bits4;
  EXPECT_NE(error_of(rule("    weights: {type: float, bits: 8, group_size: 32}\n")).find("take strategy 'channel' or 'tensor'"),
            std::string::npos);
  EXPECT_NE(error_of(rule("    weights: {type: float, bits: 8, symmetric: false}\n")).find("quantize[0].weights.symmetric"),
            std::string::npos);
  EXPECT_NE(error_of(rule("    weights: {type: fp8, bits: 8}\n")).find("quantize[0].weights.type"), std::string::npos);
  EXPECT_NE(error_of(rule("    weights: {type: float, bits: 8}\n    activations: {type: int, bits: 8}\n"))
                .find("int activations with float weights are not supported"),
            std::string::npos);
  EXPECT_NE(error_of(rule("    weights: {type: float, bits: 8}\n    activations: {bits: 8, strategy: tensor, dynamic: false}\n"))
                .find("static FP8 activation scales are not supported"),
            std::string::npos);
}

}  // namespace test_fp8_parse
