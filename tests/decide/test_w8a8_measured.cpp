// test_w8a8_measured.cpp: with an accuracy section, a static W8A8 request's
// static/dynamic choice is measured, not ruled. A copy of stories260K with a
// planted activation outlier: intermediate neuron 7 of layer 2 has its
// up_proj row scaled by 100 and its down_proj column by 1/100 (the float
// function is unchanged, silu(g) * u being linear in u), so down_proj's input
// has one channel 100x the rest: one static per-tensor scale, set by that
// channel's calibration maximum, leaves the other channels a few codes, while
// a per-token scale follows each token's own value of it. The planted group
// must be the one static hurts most, must go dynamic on the measurement, and
// every group's mode must follow its measured KLDs (static kept where its
// extra KLD is within the group's share of the target), so some stay static.
#include "core/runtime.hpp"
#include "decide/activation_sim.hpp"
#include "decide/decision.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_w8a8_measured {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;
const std::string kModel = kShared + "/models/stories260K-hf";
constexpr int kNeuron = 7;

// The F32 tensor `name` inside safetensors bytes: data, rows, cols.
std::tuple<float*, int64_t, int64_t> f32_tensor(std::string& bytes, const std::string& name) {
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const auto t = nlohmann::json::parse(bytes.substr(8, n)).at(name);
  EXPECT_EQ(t.at("dtype"), "F32");
  const uint64_t begin = t.at("data_offsets")[0];
  return {reinterpret_cast<float*>(bytes.data() + 8 + n + begin), t.at("shape")[0], t.at("shape")[1]};
}

std::filesystem::path outlier_copy(const test::TempDir& dir) {
  const auto model = dir / "outlier";
  std::filesystem::create_directories(model);
  std::filesystem::copy_file(kModel + "/config.json", model / "config.json");
  std::string bytes = test::read_file(kModel + "/model.safetensors");
  auto [up, up_rows, up_cols] = f32_tensor(bytes, "model.layers.2.mlp.up_proj.weight");
  for (int64_t c = 0; c < up_cols; ++c) up[kNeuron * up_cols + c] *= 100.0f;
  auto [down, down_rows, down_cols] = f32_tensor(bytes, "model.layers.2.mlp.down_proj.weight");
  for (int64_t r = 0; r < down_rows; ++r) down[r * down_cols + kNeuron] /= 100.0f;
  test::write_file(model / "model.safetensors", bytes);
  return model;
}

}  // namespace

TEST(FakeQuantizeInputs, StaticClipsDynamicFollowsEachRow) {
  // Static scale 0.1: 0.26 -> 3 codes -> 0.3; 100 clips to 127 codes (12.7).
  std::vector<float> x = {0.26f, 100.0f, -0.04f, 1.0f};
  decide::fake_quantize_inputs(x.data(), 2, 2, decide::ActivationMode::StaticTensor, 0.1f, nullptr);
  EXPECT_FLOAT_EQ(x[0], 0.3f);
  EXPECT_FLOAT_EQ(x[1], 12.7f);
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_FLOAT_EQ(x[3], 1.0f);
  // Dynamic: row max |x| / 127 per row; the row's maximum is exact.
  std::vector<float> y = {0.26f, 100.0f, -0.04f, 1.0f};
  decide::fake_quantize_inputs(y.data(), 2, 2, decide::ActivationMode::DynamicToken, 0.0f, nullptr);
  EXPECT_FLOAT_EQ(y[1], 100.0f);
  EXPECT_NEAR(y[0], 0.0f, 100.0f / 127 / 2);
  EXPECT_FLOAT_EQ(y[3], 1.0f);
  EXPECT_NEAR(y[2], -0.04f, 1.0f / 127 / 2);
  // A divisor: x / d is quantized, d multiplied back.
  std::vector<float> z = {0.26f, 100.0f};
  const std::vector<float> d = {1.0f, 1000.0f};
  decide::fake_quantize_inputs(z.data(), 1, 2, decide::ActivationMode::StaticTensor, 0.1f, d.data());
  EXPECT_FLOAT_EQ(z[0], 0.3f);
  EXPECT_FLOAT_EQ(z[1], 100.0f);
}

TEST(W8A8Measured, PlantedOutlierGroupGoesDynamicOnTheMeasurement) {
  test::TempDir dir;
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  Runtime rt(o);
  Pipeline p = parse_pipeline_text(
      "model: {path: " + outlier_copy(dir).string() + "}\n"
      "calibration: {text: " + kShared + "/data/tinystories/tinystories_val.subset.txt, tokenizer: " + kShared +
      "/models/stories260K/stories260K.gguf, samples: 8, seq_len: 128}\n"
      "quantize:\n  - algorithm: auto\n    weights: {bits: 8, strategy: channel}\n"
      "    activations: {bits: 8, strategy: tensor}\n    params: {candidates: [rtn]}\n"
      "ignore: [lm_head]\n"
      "accuracy: {text: " + kShared + "/data/wikitext-2-raw/wiki.test.raw, metric: kld, max_increase: 0.02, "
      "fallback: [bf16], max_tokens: 768}\n"
      "output: {path: " + (dir / "out").string() + "}\n",
      "w8a8-measured.yaml", ".");
  validate_with_plugins(p, rt);
  decide::Decision d = decide::decide(rt, p);
  ASSERT_EQ(d.groups.size(), 20u);
  size_t worst_static = 0;
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const auto& g = d.groups[i];
    ASSERT_GE(g.kld_static, 0.0) << g.name;
    ASSERT_GE(g.kld_dynamic, 0.0) << g.name;
    // Static unless it costs more than the group's share of the target (0.02 / 20).
    EXPECT_EQ(g.dynamic_activations, g.kld_static - g.kld_dynamic > 0.02 / 20) << g.name;
    EXPECT_NE(g.activation_why.find("measured with only this group quantized"), std::string::npos) << g.activation_why;
    if (g.kld_static > d.groups[worst_static].kld_static) worst_static = i;
  }
  int dynamic = 0;
  for (const auto& g : d.groups) dynamic += g.dynamic_activations;
  EXPECT_LT(dynamic, 20) << "every group dynamic: the measurement chose nothing";
  const auto& planted = d.groups[worst_static];
  EXPECT_EQ(planted.name, "model.layers.2.mlp_down");
  EXPECT_TRUE(planted.dynamic_activations) << planted.activation_why;
  EXPECT_GT(planted.kld_static, 3 * planted.kld_dynamic) << planted.activation_why;
  // The end-to-end rows simulate the activations too: rtn everywhere as
  // evaluated (W8A8, each group in its mode) scores worse than the same
  // weights with float inputs.
  const decide::VariantRow* rtn = nullptr;
  for (const auto& v : d.variants)
    if (v.name == "rtn") rtn = &v;
  ASSERT_NE(rtn, nullptr);
  for (const auto& g : d.groups) decide::set_group_weights(*d.float_model, g, g.candidates[0].weights);
  const double weight_only = d.evaluator->evaluate(*d.float_model).kld;
  EXPECT_GT(rtn->accuracy.kld, weight_only * 1.05) << "weight-only " << weight_only;
}

}  // namespace test_w8a8_measured
