// test_pipeline_plugins.cpp: checks that need the real plugins: algorithm
// and format names, and params against each plugin's declared specs.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "pipeline/pipeline.hpp"

#include <gtest/gtest.h>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_pipeline_plugins {

namespace {
const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";

std::string validate_error(const std::string& yaml) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  Runtime rt(o);
  Pipeline p = parse_pipeline_text(yaml, "p.yaml", ".");
  try {
    validate_with_plugins(p, rt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(PipelinePlugins, UnknownAlgorithmSuggestsTheNearest) {
  std::string e = validate_error("model: {path: " + kModel + "}\nquantize: [{algorithm: rnt, weights: {bits: 4}}]\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("p.yaml:2:24: quantize[0].algorithm: no algorithm plugin named 'rnt'; did you mean 'rtn'?"),
            std::string::npos) << e;
}

TEST(PipelinePlugins, ParamsAreCheckedAgainstThePluginSpecs) {
  std::string e = validate_error("model: {path: " + kModel + "}\nquantize:\n  - algorithm: rtn\n    weights: {bits: 4}\n    params: {damp: 0.1}\noutput: {path: /tmp/o}\n");
  EXPECT_NE(e.find("p.yaml:5:14: quantize[0].params.damp: 'rtn' has no parameter 'damp' (it takes none)"), std::string::npos) << e;
}

TEST(PipelinePlugins, UnknownFormatIsReported) {
  std::string e = validate_error("model: {path: " + kModel + "}\nquantize: [{algorithm: rtn, weights: {bits: 4}}]\noutput: {format: gguff, path: /tmp/o}\n");
  EXPECT_NE(e.find("output.format: no format plugin named 'gguff'"), std::string::npos) << e;
}

}  // namespace test_pipeline_plugins
