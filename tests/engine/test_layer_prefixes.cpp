// test_layer_prefixes.cpp: Model::layer_forward's LayerPart::To* parts run
// a decoder layer only as far as a tap needs (calibration's statistics
// passes, calibrate/calibrator.cpp statistics_pass_part). Each part's taps
// are the whole layer's taps, byte for byte, for the groups up to its end,
// and none after; x is left unchanged (ToAttentionInput) or as the
// attention half leaves it. On stories260K (dense) and on a random
// qwen2_moe (shared expert, top-2 of 8, one expert's down_proj tapped over
// every token, a rarely routed expert with no rows).
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "moe_checkpoint.hpp"
#include "test_runtime.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

using namespace xquant;
using namespace xquant::test;

namespace test_layer_prefixes {

namespace {

const std::filesystem::path kShared = XQUANT_SHARED_DIR;

using Taps = std::map<int, std::vector<float>>;  // group -> its input rows (one call: one sample)

struct Pass {  // what one layer_forward call tapped and left in x
  Taps taps;
  std::vector<float> x;
};

Pass run(const Model& model, int layer, const std::vector<float>& input, LayerPart part) {
  const Architecture& a = model.arch();
  const int64_t rows = static_cast<int64_t>(input.size()) / a.hidden;
  std::vector<float> k(static_cast<size_t>(rows * a.n_kv_heads * a.head_dim)), v(k.size());
  Pass r{{}, input};
  model.layer_forward(layer, r.x.data(), rows, {SequenceSpan{0, rows, 0, k.data(), v.data()}},
                      [&](int g, const float* x, int64_t n, int64_t c) {
                        EXPECT_EQ(r.taps.count(g), 0u) << "group " << g << " tapped twice";
                        r.taps[g].assign(x, x + n * c);
                      },
                      part);
  return r;
}

std::vector<float> random_rows(int64_t rows, int64_t hidden, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(rows * hidden));
  for (auto& x : v) x = normal(rng);
  return v;
}

// The whole layer's taps of the groups `keep` says a part reaches.
template <class Keep>
Taps only(const Taps& taps, Keep keep) {
  Taps out;
  for (const auto& [g, x] : taps)
    if (keep(g)) out[g] = x;
  return out;
}

// Checks the three To* parts of `layer` against its whole forward and its
// attention half. Groups past kMlpIn are read inside the MLP (the down
// projections; MoE: also each expert's gathered gate/up rows).
void check_prefixes(const Model& model, int layer, const std::vector<float>& input) {
  const Pass whole = run(model, layer, input, LayerPart::Whole);
  const Pass attention = run(model, layer, input, LayerPart::Attention);
  ASSERT_GT(whole.taps.size(), 3u);

  const Pass to_attention = run(model, layer, input, LayerPart::ToAttentionInput);
  EXPECT_EQ(to_attention.taps, only(whole.taps, [](int g) { return g == LayerDesc::kAttnIn; }));
  EXPECT_EQ(to_attention.x, input) << "ToAttentionInput changed the residual stream";

  const Pass to_mlp = run(model, layer, input, LayerPart::ToMlpInput);
  EXPECT_EQ(to_mlp.taps, only(whole.taps, [](int g) { return g <= LayerDesc::kMlpIn; }));
  EXPECT_EQ(to_mlp.x, attention.x);

  const Pass to_down = run(model, layer, input, LayerPart::ToDownInputs);
  EXPECT_EQ(to_down.taps, whole.taps) << "every group's input is read before the down projections run";
  EXPECT_EQ(to_down.x, attention.x) << "ToDownInputs added the MLP's output";
}

}  // namespace

TEST(LayerPrefixes, DenseLayersTapWhatTheWholeLayerTapsUpToTheirEnd) {
  ModelOptions mo;
  mo.dequantize_all = true;
  auto model = Model::open(quiet_runtime(), kShared / "models/stories260K-hf", mo);
  for (int layer = 0; layer < model->arch().n_layers; ++layer)
    check_prefixes(*model, layer, random_rows(23, model->arch().hidden, 40u + static_cast<uint32_t>(layer)));
}

TEST(LayerPrefixes, MoeLayersTapWhatTheWholeLayerTapsUpToTheirEnd) {
  Cfg c;
  c.type = "qwen2_moe";
  c.shared = 16;
  c.experts = 8;
  c.top_k = 2;
  ModelOptions mo;
  mo.dequantize_all = true;
  auto model = Model::open(quiet_runtime(), write_checkpoint(c, make_weights(c, 5), "layer-prefixes-qwen2_moe"), mo);
  const LayerDesc& desc = model->arch().layers[0];
  ASSERT_TRUE(desc.moe);
  const std::vector<float> input = random_rows(5, c.hidden, 9);  // 10 routed slots over 8 experts

  check_prefixes(*model, 0, input);
  const Pass whole = run(*model, 0, input, LayerPart::Whole);
  size_t routed_experts = 0;
  for (int64_t e = 0; e < c.experts; ++e)
    routed_experts += whole.taps.count(desc.experts.expert_out_group[static_cast<size_t>(e)]);
  EXPECT_LT(routed_experts, static_cast<size_t>(c.experts)) << "the case needs an expert no row chose";
  EXPECT_EQ(whole.taps.count(desc.experts.shared_out_group), 1u);

  // An expert on all-token statistics: its down_proj input over every row.
  std::vector<bool> all_tokens(static_cast<size_t>(c.experts), false);
  all_tokens[3] = true;
  model->set_all_token_down_taps(all_tokens);
  check_prefixes(*model, 0, input);
  const Pass with_all_tokens = run(*model, 0, input, LayerPart::ToDownInputs);
  EXPECT_EQ(with_all_tokens.taps.at(desc.experts.expert_out_group[3]).size(), static_cast<size_t>(5 * c.moe_inter));
  model->set_all_token_down_taps({});
}

}  // namespace test_layer_prefixes
