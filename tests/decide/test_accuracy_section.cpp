// test_accuracy_section.cpp: `algorithm: auto` and the `accuracy:` section
// of a pipeline: what parses, and what is refused with the key named.
#include "core/error.hpp"
#include "pipeline/pipeline.hpp"

#include <gtest/gtest.h>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_accuracy_section {

namespace {

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";
const std::string kWiki = std::string(XQUANT_SHARED_DIR) + "/data/wikitext-2-raw/wiki.test.raw";

std::string pipeline(const std::string& algorithm, const std::string& accuracy) {
  return "model: {path: " + kModel + "}\nquantize:\n  - algorithm: " + algorithm +
         "\n    weights: {bits: 4, group_size: 32}\n" + accuracy + "output: {path: /tmp/unused-decide}\n";
}

std::string error_of(const std::string& yaml) {
  try {
    parse_pipeline_text(yaml, "p.yaml", ".");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(AccuracySection, ParsesPercentAndLadder) {
  Pipeline p = parse_pipeline_text(
      pipeline("auto", "accuracy: {text: " + kWiki + ", metric: ppl, max_increase: 1%, fallback: [bf16], max_tokens: 4096}\n"
                       "report: r/report.html\n"),
      "p.yaml", "/base");
  ASSERT_TRUE(p.has_automatic_rule());
  EXPECT_TRUE(p.rules[0].stages.empty());
  EXPECT_EQ(p.rules[0].algorithm_names(), "auto");
  EXPECT_TRUE(p.accuracy.enabled);
  EXPECT_EQ(p.accuracy.metric, "ppl");
  EXPECT_DOUBLE_EQ(p.accuracy.max_increase, 0.01);
  EXPECT_EQ(p.accuracy.fallback, std::vector<std::string>{"bf16"});
  EXPECT_EQ(p.accuracy.max_tokens, 4096);
  EXPECT_EQ(p.report_path, std::filesystem::path("/base/r/report.html"));
}

TEST(AccuracySection, AbsoluteKldByDefault) {
  Pipeline p = parse_pipeline_text(pipeline("auto", "accuracy: {text: " + kWiki + ", max_increase: 0.02}\n"), "p.yaml", ".");
  EXPECT_EQ(p.accuracy.metric, "kld");
  EXPECT_DOUBLE_EQ(p.accuracy.max_increase, 0.02);
  EXPECT_EQ(p.accuracy.fallback, (std::vector<std::string>{"int8", "bf16"}));
}

TEST(AccuracySection, ByteBudgetAndBaselineAreOptional) {
  Pipeline none = parse_pipeline_text(pipeline("auto", "accuracy: {text: " + kWiki + "}\n"), "p.yaml", ".");
  EXPECT_EQ(none.accuracy.max_bytes, 0u);
  EXPECT_FALSE(none.accuracy.compare_baseline);
  Pipeline p = parse_pipeline_text(
      pipeline("auto", "accuracy: {text: " + kWiki + ", max_bytes: 250000, compare_baseline: true}\n"), "p.yaml", ".");
  EXPECT_EQ(p.accuracy.max_bytes, 250000u);
  EXPECT_TRUE(p.accuracy.compare_baseline);
}

TEST(AccuracySection, BadValuesNameTheirKey) {
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: " + kWiki + ", metric: bleu}\n")).find("accuracy.metric"),
            std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: " + kWiki + ", max_increase: lots}\n")).find("accuracy.max_increase"),
            std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: " + kWiki + ", fallback: [fp8]}\n")).find("accuracy.fallback[0]"),
            std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: " + kWiki + ", max_bytes: 0}\n")).find("accuracy.max_bytes"),
            std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: " + kWiki + ", max_bytes: 1MB}\n")).find("accuracy.max_bytes"),
            std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: " + kWiki + ", compare_baseline: maybe}\n"))
                .find("accuracy.compare_baseline"),
            std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {metric: kld}\n")).find("missing 'text'"), std::string::npos);
  EXPECT_NE(error_of(pipeline("auto", "accuracy: {text: /no/such/file}\n")).find("is not a file"), std::string::npos);
}

TEST(AccuracySection, AutoRuleTakesCandidates) {
  const std::string rule = "model: {path: " + kModel + "}\nquantize:\n  - algorithm: auto\n    weights: {bits: 4}\n    params: ";
  Pipeline p = parse_pipeline_text(rule + "{candidates: [awq, rtn]}\noutput: {path: /tmp/unused-decide}\n", "p.yaml", ".");
  EXPECT_EQ(p.rules[0].candidates, (std::vector<std::string>{"awq", "rtn"}));
  EXPECT_NE(error_of(rule + "{candidates: []}\noutput: {path: /tmp/unused-decide}\n").find("quantize[0].params.candidates"),
            std::string::npos);
  EXPECT_NE(error_of(rule + "{damp: 0.1}\noutput: {path: /tmp/unused-decide}\n").find("damp"), std::string::npos);
}

TEST(AccuracySection, NeedsAnAutoRule) {
  const std::string e = error_of(pipeline("rtn", "accuracy: {text: " + kWiki + "}\n"));
  EXPECT_NE(e.find("needs a rule with 'algorithm: auto'"), std::string::npos) << e;
}

}  // namespace test_accuracy_section
