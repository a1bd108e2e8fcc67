// test_layer_halves.cpp: a decoder layer's attention half then its MLP
// half (Model::layer_forward with LayerPart) give the whole layer bit for
// bit, on stories260K with random input rows, across several samples in
// one call and with a tap seeing the same group inputs (AWQ's trials of
// the MLP groups rerun only the MLP half, pipeline/group_forward.cpp).
#include "core/runtime.hpp"
#include "engine/model.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_layer_halves {

namespace {

const std::filesystem::path kShared = XQUANT_SHARED_DIR;

}  // namespace

TEST(LayerHalves, AttentionThenMlpIsTheWholeLayerBitForBit) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  Runtime rt(o);
  ModelOptions mo;
  mo.dequantize_all = true;
  auto model = Model::open(rt, kShared / "models/stories260K-hf", mo);
  const Architecture& a = model->arch();
  const int64_t n0 = 37, n1 = 100, rows = n0 + n1;  // two sequences of different lengths
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> input(static_cast<size_t>(rows * a.hidden));
  for (auto& v : input) v = normal(rng);
  const size_t kv = static_cast<size_t>(n1 * a.n_kv_heads * a.head_dim);
  std::vector<float> k0(kv), v0(kv), k1(kv), v1(kv);
  const std::vector<SequenceSpan> spans{SequenceSpan{0, n0, 0, k0.data(), v0.data()},
                                        SequenceSpan{n0, n1, 0, k1.data(), v1.data()}};
  for (int layer = 0; layer < a.n_layers; ++layer) {
    std::map<int, std::vector<float>> whole_taps, half_taps;
    auto tap_into = [](std::map<int, std::vector<float>>& m) {
      return [&m](int g, const float* x, int64_t r, int64_t c) { m[g].assign(x, x + r * c); };
    };
    std::vector<float> whole = input, halves = input;
    model->layer_forward(layer, whole.data(), rows, spans, tap_into(whole_taps));
    model->layer_forward(layer, halves.data(), rows, spans, tap_into(half_taps), LayerPart::Attention);
    EXPECT_NE(halves, input) << "the attention half changed nothing";
    EXPECT_EQ(half_taps.count(LayerDesc::kMlpIn), 0u) << "the attention half ran the MLP";
    model->layer_forward(layer, halves.data(), rows, spans, tap_into(half_taps), LayerPart::Mlp);
    EXPECT_EQ(halves, whole) << "layer " << layer;
    EXPECT_EQ(half_taps, whole_taps) << "layer " << layer;
    ASSERT_EQ(whole_taps.size(), 4u);
  }
}

}  // namespace test_layer_halves
