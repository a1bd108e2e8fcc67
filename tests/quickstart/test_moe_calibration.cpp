// test_moe_calibration.cpp: calibrated quantization of a Mixture-of-Experts
// model where most experts receive no calibration tokens (one 4-token window,
// top-1 routing over 8 experts: at least 4 experts per layer get none). The
// rule of calibrate/moe_calibration.hpp must hold: the output is written,
// every expert is quantized, the report lists every expert with its routed
// token count and the all-token fallback of those under min_tokens, and the
// quantized model's logits are finite (never a NaN scale).
#include "checkpoint/checkpoint.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "moe_checkpoint.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"
#include "test_runtime.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;
using namespace xquant;

namespace {

const fs::path kGguf = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K" / "stories260K.gguf";
const fs::path kText = fs::path(XQUANT_SHARED_DIR) / "data" / "tinystories" / "tinystories_val.subset.txt";

fs::path tiny_moe() {
  test::Cfg c{"qwen3_moe"};
  c.layers = 2;
  c.top_k = 1;
  c.vocab = 512;  // stories260K's vocabulary tokenizes the calibration text
  c.norm_topk = true;
  return test::write_checkpoint(c, test::make_weights(c, 5), "calibration");
}

RunReport quantize(const fs::path& model, const std::string& algorithm, const std::string& moe, const fs::path& out) {
  const std::string yaml =
      "model: {path: " + model.string() + "}\n" +
      "calibration: {text: " + kText.string() + ", tokenizer: " + kGguf.string() +
      ", samples: 1, seq_len: 4, moe: " + moe + "}\n" +
      "quantize:\n  - {targets: [\"re:.*_proj$\"], algorithm: " + algorithm +
      ", weights: {bits: 4, group_size: 8, symmetric: false}}\n" +
      "ignore: [\"re:.*mlp\\\\.gate$\", lm_head]\noutput: {path: " + out.string() + "}\n";
  Pipeline p = parse_pipeline_text(yaml, algorithm, out.parent_path());
  return run_pipeline(test::quiet_runtime(), p);
}

void expect_finite_logits(const fs::path& out) {
  auto model = Model::open(test::quiet_runtime(), out);
  EXPECT_EQ(model->quantized_linears() + model->dequantized_linears(), 2 * (4 + 8 * 3));
  const std::vector<int32_t> ids = {1, 40, 300, 7, 99, 250};
  KvCache cache(model->arch(), static_cast<int64_t>(ids.size()));
  const std::vector<float> logits =
      model->forward({SequenceInput{&cache, ids.data(), static_cast<int64_t>(ids.size()), true}});
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

// An example pipeline of examples/moe with the tiny model, our tokenizer
// and a temp output in place of its model, calibration and output lines.
RunReport run_example(const std::string& file, const fs::path& model, const fs::path& out) {
  const fs::path path = fs::path(XQUANT_SOURCE_DIR) / "examples" / "moe" / file;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string yaml = ss.str();
  yaml = std::regex_replace(yaml, std::regex("model: \\{path: [^}]*\\}"), "model: {path: " + model.string() + "}");
  yaml = std::regex_replace(yaml, std::regex("output: \\{[^}]*\\}"), "output: {path: " + out.string() + "}");
  yaml = std::regex_replace(yaml, std::regex("  samples: 128\n  seq_len: 512"),
                            "  tokenizer: " + kGguf.string() + "\n  samples: 2\n  seq_len: 16");
  Pipeline p = parse_pipeline_text(yaml, file, path.parent_path());
  return run_pipeline(test::quiet_runtime(), p);
}

}  // namespace

TEST(MoeCalibration, ExpertsWithoutTokensFallBackToAllTokenStatistics) {
  const fs::path model = tiny_moe();
  for (const std::string algorithm : {"gptq", "awq"}) {
    const fs::path out = model.parent_path() / ("out-" + algorithm);
    RunReport r = quantize(model, algorithm, "{min_tokens: 2}", out);
    ASSERT_EQ(r.experts.size(), 16u) << algorithm;
    for (int layer = 0; layer < 2; ++layer) {
      int fallback = 0;
      uint64_t routed = 0;
      for (const auto& e : r.experts) {
        if (e.layer != layer) continue;
        routed += e.routed_tokens;
        const bool all_tokens = e.statistics.rfind("all tokens", 0) == 0;
        EXPECT_EQ(all_tokens, e.routed_tokens < 2) << algorithm << " layer " << layer << " expert " << e.expert;
        fallback += all_tokens ? 1 : 0;
      }
      EXPECT_EQ(routed, 4u) << "4 tokens, top-1";
      EXPECT_GE(fallback, 4) << algorithm << " layer " << layer;
    }
    EXPECT_EQ(r.layers.size(), static_cast<size_t>(2 * (4 + 8 * 3))) << algorithm;
    for (const auto& l : r.layers) EXPECT_TRUE(std::isfinite(l.rel_error)) << l.module;
    expect_finite_logits(out);
  }
}

TEST(MoeCalibration, CalibrateAllExpertsGivesEveryExpertAllTokens) {
  const fs::path model = tiny_moe();
  const fs::path out = model.parent_path() / "out-all";
  RunReport r = quantize(model, "gptq", "{calibrate_all_experts: true}", out);
  ASSERT_EQ(r.experts.size(), 16u);
  for (const auto& e : r.experts) EXPECT_EQ(e.statistics, "all tokens (calibrate_all_experts)");
  expect_finite_logits(out);
}

// The examples' rules leave the router dense and quantize every expert; the
// W8A8 one smooths the post-attention norm, and the router's columns are
// scaled to match: norm' * router' == norm * router, so routing is kept.
TEST(MoeCalibration, ExamplesKeepTheRouterDenseAndItsLogitsUnderSmoothing) {
  const fs::path model = tiny_moe();
  for (const std::string file : {"qwen3-moe-gptq.yaml", "qwen3-moe-awq.yaml", "qwen3-moe-w8a8.yaml"}) {
    const fs::path out = model.parent_path() / ("example-" + file);
    RunReport r = run_example(file, model, out);
    EXPECT_EQ(r.layers.size(), static_cast<size_t>(2 * (4 + 8 * 3))) << file;
    EXPECT_EQ(r.experts.size(), 16u) << file;
    for (const auto& l : r.layers) EXPECT_EQ(l.module.find("mlp.gate"), std::string::npos) << l.module;
    expect_finite_logits(out);
    auto src = Checkpoint::open(test::quiet_runtime(), model);
    auto dst = Checkpoint::open(test::quiet_runtime(), out);
    for (int layer = 0; layer < 2; ++layer) {
      const std::string p = "model.layers." + std::to_string(layer) + ".";
      const auto n0 = src->read_f32(src->require(p + "post_attention_layernorm.weight"));
      const auto n1 = dst->read_f32(dst->require(p + "post_attention_layernorm.weight"));
      const auto r0 = src->read_f32(src->require(p + "mlp.gate.weight"));
      const auto r1 = dst->read_f32(dst->require(p + "mlp.gate.weight"));
      ASSERT_EQ(r0.size(), r1.size());
      const size_t cols = n0.size();
      bool smoothed = false;
      for (size_t j = 0; j < cols; ++j) smoothed |= std::fabs(n1[j] - n0[j]) > 1e-6f * std::fabs(n0[j]);
      if (file == "qwen3-moe-w8a8.yaml") {
        EXPECT_TRUE(smoothed) << "smoothquant always rescales the norm";
      }
      for (size_t i = 0; i < r0.size(); ++i) {
        const double before = static_cast<double>(r0[i]) * n0[i % cols], after = static_cast<double>(r1[i]) * n1[i % cols];
        ASSERT_NEAR(after, before, 1e-5 * std::fabs(before) + 1e-7) << file << " layer " << layer << " element " << i;
      }
    }
  }
}
