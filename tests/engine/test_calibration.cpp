// test_calibration.cpp: the layer-wise calibration capture on stories260K.
// Layer 0's q/k/v input is RMSNorm(embedding rows), which this test
// computes directly from the checkpoint in double precision and compares
// with every statistic; sampled rows must be real input rows; the callback's
// weight changes must reach the next layer (sequential propagation) and must
// not when propagation is off.
#include "calibrate/calibrator.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

using namespace xquant;
namespace fs = std::filesystem;

namespace {
const fs::path kShared = XQUANT_SHARED_DIR;

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

std::vector<std::vector<int32_t>> test_samples() {
  return {{1, 403, 407, 261, 378, 53, 333, 407, 84, 291, 270, 313, 306, 430},
          {1, 68, 306, 430, 384, 267, 401, 23},
          {1, 5, 99, 123, 456, 511, 7, 300, 301, 302, 40}};
}
}  // namespace

TEST(Calibration, Layer0StatsMatchDirectComputation) {
  ModelOptions mo;
  mo.dequantize_all = true;
  auto model = Model::open(rt(), kShared / "models/stories260K-hf", mo);
  const auto& a = model->arch();
  auto samples = test_samples();
  auto& cp = model->checkpoint();
  auto emb = cp.read_f32(cp.require("model.embed_tokens.weight"));
  auto norm = cp.read_f32(cp.require("model.layers.0.input_layernorm.weight"));
  const int64_t H = a.hidden;
  std::vector<std::vector<double>> rows;
  for (const auto& s : samples)
    for (int32_t id : s) {
      std::vector<double> r(H);
      double ss = 0;
      for (int64_t c = 0; c < H; ++c) ss += double(emb[id * H + c]) * emb[id * H + c];
      double inv = 1.0 / std::sqrt(ss / H + a.rms_eps);
      for (int64_t c = 0; c < H; ++c) r[c] = emb[id * H + c] * inv * norm[c];
      rows.push_back(r);
    }
  const uint32_t all = XQ_NEED_ABSMAX | XQ_NEED_MEAN_ABS | XQ_NEED_SUM_SQ | XQ_NEED_HESSIAN | XQ_NEED_SAMPLES;
  LayerwiseCalibrator cal(*model, samples);
  CalibrationOptions co;
  co.max_sample_rows = 10;
  int calls = 0;
  cal.run(all, [&](int layer, LayerStats& st, LayerWeightsMutable& w) {
    ++calls;
    EXPECT_EQ(w.linears.size(), 7u);
    for (int g = 0; g < 4; ++g) EXPECT_EQ(st.groups[g].tokens, rows.size());
    EXPECT_EQ(st.view(LayerDesc::kDown).cols, a.intermediate);
    EXPECT_EQ(st.view(LayerDesc::kO).cols, a.n_heads * a.head_dim);
    if (layer != 0) return;
    xq_linear_stats v = st.view(LayerDesc::kK);  // q/k/v share the input
    EXPECT_EQ(v.hessian, st.view(LayerDesc::kQ).hessian);
    ASSERT_EQ(v.cols, H);
    for (int64_t c = 0; c < H; ++c) {
      double amax = 0, sa = 0, sq = 0;
      for (const auto& r : rows) amax = std::max(amax, std::fabs(r[c])), sa += std::fabs(r[c]), sq += r[c] * r[c];
      EXPECT_NEAR(v.absmax[c], amax, 1e-5 * (1 + amax));
      EXPECT_NEAR(v.mean_abs[c], sa / rows.size(), 1e-5 * (1 + sa));
      EXPECT_NEAR(v.sum_sq[c], sq, 1e-4 * (1 + sq));
      for (int64_t d = 0; d < H; ++d) {
        double h = 0;
        for (const auto& r : rows) h += r[c] * r[d];
        ASSERT_NEAR(v.hessian[c * H + d], h, 1e-4 * (1 + std::fabs(h))) << c << "," << d;
      }
    }
    ASSERT_EQ(v.n_samples, 10);
    for (int64_t s = 0; s < v.n_samples; ++s) {
      bool found = false;
      for (const auto& r : rows) {
        bool same = true;
        for (int64_t c = 0; c < H && same; ++c) same = std::fabs(v.samples[s * H + c] - r[c]) < 1e-5;
        found = found || same;
      }
      EXPECT_TRUE(found) << "sample row " << s << " is not an input row";
    }
  }, co);
  EXPECT_EQ(calls, a.n_layers);
}

TEST(Calibration, CallbackWeightChangesPropagateToTheNextLayer) {
  auto layer1_absmax = [&](bool zero_down, bool propagate) {
    ModelOptions mo;
    mo.dequantize_all = true;
    auto model = Model::open(rt(), kShared / "models/stories260K-hf", mo);
    LayerwiseCalibrator cal(*model, test_samples());
    CalibrationOptions co;
    co.propagate_updated = propagate;
    std::vector<float> out;
    cal.run(XQ_NEED_ABSMAX, [&](int layer, LayerStats& st, LayerWeightsMutable& w) {
      if (layer == 0 && zero_down) std::fill(w.linears[LayerDesc::kDown].w.begin(), w.linears[LayerDesc::kDown].w.end(), 0.0f);
      if (layer == 1) out.assign(st.groups[0].absmax.begin(), st.groups[0].absmax.end());
    }, co);
    return out;
  };
  auto base = layer1_absmax(false, true);
  auto changed = layer1_absmax(true, true);
  auto frozen = layer1_absmax(true, false);
  ASSERT_EQ(base.size(), changed.size());
  double diff = 0, diff_frozen = 0;
  for (size_t i = 0; i < base.size(); ++i)
    diff = std::max(diff, (double)std::fabs(base[i] - changed[i])), diff_frozen = std::max(diff_frozen, (double)std::fabs(base[i] - frozen[i]));
  EXPECT_GT(diff, 1e-3);         // layer 1 saw layer 0's new weights
  EXPECT_EQ(diff_frozen, 0.0);   // without propagation it saw the float model's outputs
}

TEST(Calibration, SamplesFromTextAreSeededWindowsAndEmptySamplesAreRejected) {
  auto model = Model::open(rt(), kShared / "models/stories260K/stories260K.gguf");
  auto s = LayerwiseCalibrator::samples_from_text(*model, "Once upon a time there was a cat. The cat sat on a mat and was happy.", 4, 8, 1);
  ASSERT_EQ(s.size(), 4u);
  for (const auto& x : s) EXPECT_EQ(x.size(), 8u);
  EXPECT_EQ(s, LayerwiseCalibrator::samples_from_text(*model, "Once upon a time there was a cat. The cat sat on a mat and was happy.", 4, 8, 1));
  EXPECT_THROW(LayerwiseCalibrator(*model, {{}}), Error);
}

TEST(Calibration, SequentialGroupsSeeEarlierGroupsUpdatedWeights) {
  // o_proj's input (group attn_out) with and without zeroing v_proj in the
  // attn_in callback of the same layer: only true-sequential order sees it.
  auto o_input_absmax = [&](bool zero_v) {
    ModelOptions mo;
    mo.dequantize_all = true;
    auto model = Model::open(rt(), kShared / "models/stories260K-hf", mo);
    LayerwiseCalibrator cal(*model, test_samples());
    CalibrationOptions co;
    co.sequential_groups = true;
    std::vector<int> order;
    std::vector<float> out;
    cal.run(XQ_NEED_ABSMAX, [&](int layer, LayerStats& st, LayerWeightsMutable& w) {
      if (layer != 0) return;
      order.push_back(st.active_group);
      if (st.active_group == LayerDesc::kAttnIn && zero_v)
        std::fill(w.linears[LayerDesc::kV].w.begin(), w.linears[LayerDesc::kV].w.end(), 0.0f);
      if (st.active_group == LayerDesc::kAttnOut) out = st.groups[LayerDesc::kAttnOut].absmax;
    }, co);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
    return out;
  };
  auto base = o_input_absmax(false);
  auto zeroed = o_input_absmax(true);
  ASSERT_EQ(base.size(), zeroed.size());
  double mx = 0, mb = 0;
  for (size_t i = 0; i < zeroed.size(); ++i) mx = std::max(mx, (double)zeroed[i]), mb = std::max(mb, (double)base[i]);
  EXPECT_GT(mb, 0.0);
  EXPECT_EQ(mx, 0.0);  // v = 0 makes every attention output 0
}
