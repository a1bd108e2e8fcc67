// test_smoothquant.cpp: the smoothquant plugin through the registry:
// hand-checkable factors, exact folding (RMSNorm -> Linear output unchanged
// before quantization), transform-only semantics, W8A8 error reduction on
// outlier activations, and errors without calibration.
#include "algo_harness.hpp"

using namespace algotest;

namespace {

// y[T, rows] = Linear(RMSNorm(x; g)), eps 1e-6.
std::vector<float> norm_linear(const std::vector<float>& x, int64_t T, int64_t cols, const std::vector<float>& g,
                               const std::vector<float>& w, int64_t rows) {
  std::vector<float> h(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t j = 0; j < cols; ++j) ss += double(x[size_t(t * cols + j)]) * x[size_t(t * cols + j)];
    const float inv = float(1.0 / std::sqrt(ss / double(cols) + 1e-6));
    for (int64_t j = 0; j < cols; ++j) h[size_t(t * cols + j)] = x[size_t(t * cols + j)] * inv * g[size_t(j)];
  }
  return matmul_t(h, T, w, rows, cols);
}

// Activations with a few large outlier channels, as in LLM hidden states.
std::vector<float> outlier_inputs(int64_t T, int64_t cols, std::mt19937& rng) {
  std::vector<float> x = randn(static_cast<size_t>(T * cols), rng);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j : {3, 17, 40})
      if (j < cols) x[size_t(t * cols + j)] *= 60.0f;
  return x;
}

}  // namespace

TEST(SmoothQuant, NeedsAbsmax) { EXPECT_EQ(needs("smoothquant"), uint32_t(XQ_NEED_ABSMAX)); }

TEST(SmoothQuant, FactorsByHand) {
  // Two linears sharing 4 inputs; per column max|W| over both: {1, 4, 0.25, 0} -> clamp 1e-5.
  Linear a("model.layers.0.self_attn.q_proj", 2, 4), b("model.layers.0.self_attn.k_proj", 1, 4);
  a.w = {1.0f, -2.0f, 0.25f, 0.0f, -0.5f, 4.0f, 0.125f, 0.0f};
  b.w = {0.75f, 1.0f, -0.25f, 0.0f};
  a.absmax = {4.0f, 1.0f, 9.0f, 16.0f};
  b.absmax = {4.0f, 1.0f, 9.0f, 16.0f};
  a.tokens = b.tokens = 10;
  std::vector<float> norm = {1.0f, 2.0f, 3.0f, 4.0f};
  // alpha 0.5: s = sqrt(act) / sqrt(wmax) = {2/1, 1/2, 3/0.5, 4/sqrt(1e-5)}
  const double s3 = 4.0 / std::sqrt(1e-5);
  const float expect_s[4] = {2.0f, 0.5f, 6.0f, float(s3)};
  const std::vector<float> a0 = a.w, b0 = b.w;
  Params p;
  p.set("alpha", 0.5).set_bool("quantize", false);
  Result r = run("smoothquant", p, {&a, &b}, &norm, 0, "attn_qkv");
  ASSERT_EQ(r.status, XQ_OK) << r.error;
  for (auto& q : r.quant) EXPECT_EQ(q->codes, nullptr) << "transform-only leaves codes NULL";
  const float norm0[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  for (int j = 0; j < 4; ++j) {
    EXPECT_NEAR(norm[size_t(j)], norm0[j] / expect_s[j], 1e-6 * std::fabs(norm0[j] / expect_s[j])) << j;
    for (int r2 = 0; r2 < 2; ++r2)
      EXPECT_FLOAT_EQ(a.w[size_t(r2 * 4 + j)], a0[size_t(r2 * 4 + j)] * expect_s[j]) << r2 << "," << j;
    EXPECT_FLOAT_EQ(b.w[size_t(j)], b0[size_t(j)] * expect_s[j]);
  }
  // alpha 1 -> s = act; alpha 0 -> s = 1 / wmax.
  Linear c("x.fc", 1, 2);
  c.w = {0.5f, -8.0f};
  c.absmax = {3.0f, 0.0f};  // an all-zero input column clamps s at 1e-5
  std::vector<float> n2 = {1.0f, 1.0f};
  Params p1;
  p1.set("alpha", 1.0).set_bool("quantize", false);
  ASSERT_EQ(run("smoothquant", p1, {&c}, &n2).status, XQ_OK);
  EXPECT_FLOAT_EQ(n2[0], 1.0f / 3.0f);
  EXPECT_FLOAT_EQ(n2[1], 1.0f / 1e-5f);
  EXPECT_FLOAT_EQ(c.w[0], 1.5f);
}

TEST(SmoothQuant, FoldingKeepsTheOutput) {
  std::mt19937 rng(7);
  const int64_t T = 64, cols = 48;
  std::vector<float> x = outlier_inputs(T, cols, rng);
  std::vector<float> g = randn(static_cast<size_t>(cols), rng, 0.3f);
  for (auto& v : g) v += 1.0f;
  Linear q("l.q_proj", 32, cols), k("l.k_proj", 16, cols), v("l.v_proj", 16, cols);
  for (Linear* l : {&q, &k, &v}) {
    l->w = randn(static_cast<size_t>(l->rows * cols), rng, 0.05f);
    // The calibration stats are of the norm's OUTPUT (the linears' input).
    std::vector<float> h(x.size());
    std::vector<float> ident(static_cast<size_t>(cols * cols), 0.0f);
    for (int64_t j = 0; j < cols; ++j) ident[size_t(j * cols + j)] = 1.0f;
    h = norm_linear(x, T, cols, g, ident, cols);
    l->set_inputs(h, T);
  }
  std::vector<std::vector<float>> before;
  for (Linear* l : {&q, &k, &v}) before.push_back(norm_linear(x, T, cols, g, l->w, l->rows));
  std::vector<float> g2 = g;
  Params p;
  p.set("alpha", 0.8).set_bool("quantize", false);
  Result r = run("smoothquant", p, {&q, &k, &v}, &g2, 0, "attn_qkv");
  ASSERT_EQ(r.status, XQ_OK) << r.error;
  bool changed = false;
  for (int64_t j = 0; j < cols; ++j) changed |= std::fabs(g2[size_t(j)] - g[size_t(j)]) > 1e-3f * std::fabs(g[size_t(j)]);
  EXPECT_TRUE(changed) << "smoothing should have moved the norm weights";
  int i = 0;
  for (Linear* l : {&q, &k, &v}) {
    std::vector<float> after = norm_linear(x, T, cols, g2, l->w, l->rows);
    EXPECT_LT(max_rel_diff(before[size_t(i)], after), 2e-6) << l->name;
    ++i;
  }
}

TEST(SmoothQuant, W8A8ErrorDropsOnOutliers) {
  // Simulated W8A8 (int8 per-channel weights, per-token dynamic int8
  // activations): smoothing must beat plain RTN on outlier activations.
  std::mt19937 rng(11);
  const int64_t T = 128, cols = 64, rows = 48;
  std::vector<float> x = outlier_inputs(T, cols, rng);
  std::vector<float> w = randn(static_cast<size_t>(rows * cols), rng, 0.05f);
  auto w8a8 = [&](const std::vector<float>& xs, const xq_quant_tensor& qt) {
    std::vector<float> wq = dequantize(qt), xq(xs.size());
    for (int64_t t = 0; t < T; ++t) {
      float amax = 0;
      for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, std::fabs(xs[size_t(t * cols + j)]));
      const float sc = amax / 127.5f;
      for (int64_t j = 0; j < cols; ++j)
        xq[size_t(t * cols + j)] = std::clamp(std::nearbyint(xs[size_t(t * cols + j)] / sc), -128.0f, 127.0f) * sc;
    }
    return matmul_t(xq, T, wq, rows, cols);
  };
  const std::vector<float> y_ref = matmul_t(x, T, w, rows, cols);

  Linear plain("m.fc", rows, cols);
  plain.w = w;
  plain.set_inputs(x, T);
  plain.set_scheme(8, true, XQ_STRATEGY_CHANNEL, 0, XQ_ACT_DYNAMIC_TOKEN);
  Result rr = run("rtn", Params(), {&plain});
  ASSERT_EQ(rr.status, XQ_OK) << rr.error;
  const double err_rtn = mse(y_ref, w8a8(x, rr.quant[0].get()));

  Linear sm("m.fc", rows, cols);
  sm.w = w;
  sm.set_inputs(x, T);
  sm.set_scheme(8, true, XQ_STRATEGY_CHANNEL, 0, XQ_ACT_DYNAMIC_TOKEN);
  std::vector<float> norm(static_cast<size_t>(cols), 1.0f);  // x = norm * x_raw with unit norm weights
  Params p;
  p.set("alpha", 0.5);
  Result rs = run("smoothquant", p, {&sm}, &norm);
  ASSERT_EQ(rs.status, XQ_OK) << rs.error;
  const xq_quant_tensor& q = rs.quant[0].get();
  ASSERT_NE(q.codes, nullptr);
  EXPECT_EQ(q.bits, 8u);
  EXPECT_EQ(q.strategy, XQ_STRATEGY_CHANNEL);
  EXPECT_EQ(q.act_scheme, XQ_ACT_DYNAMIC_TOKEN);
  EXPECT_EQ(q.act_bits, 8u);
  std::vector<float> xs(x.size());  // the smoothed activations x / s = x * norm'
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < cols; ++j) xs[size_t(t * cols + j)] = x[size_t(t * cols + j)] * norm[size_t(j)];
  const double err_sq = mse(y_ref, w8a8(xs, q));
  EXPECT_LT(err_sq, 0.5 * err_rtn) << "smoothquant " << err_sq << " vs rtn " << err_rtn;
  EXPECT_GT(rs.rel_error[0], 0.0);
  EXPECT_LT(rs.rel_error[0], 0.05);
}

// The static activation scale is the host's (the calibrated runner sees the
// input after every stage of a chain): tests/pipeline/test_static_input_scale.cpp.

TEST(SmoothQuant, WithoutPrevNormItIsRtn) {
  std::mt19937 rng(5);
  Linear a("l.o_proj", 24, 40), b("l.o_proj", 24, 40);
  a.w = randn(static_cast<size_t>(24 * 40), rng);
  b.w = a.w;
  a.absmax.assign(40, 2.0f);
  a.tokens = 4;
  a.set_scheme(8, true, XQ_STRATEGY_CHANNEL, 0);
  b.set_scheme(8, true, XQ_STRATEGY_CHANNEL, 0);
  Result rs = run("smoothquant", Params(), {&a}, nullptr, 0, "attn_o");
  Result rr = run("rtn", Params(), {&b});
  ASSERT_EQ(rs.status, XQ_OK) << rs.error;
  ASSERT_EQ(rr.status, XQ_OK) << rr.error;
  EXPECT_EQ(a.w, b.w) << "no prev op: weights untouched";
  for (int64_t i = 0; i < 24 * 40; ++i) ASSERT_EQ(rs.quant[0]->codes[i], rr.quant[0]->codes[i]) << i;
  for (int64_t i = 0; i < 24; ++i) ASSERT_EQ(rs.quant[0]->scales[i], rr.quant[0]->scales[i]) << i;
  EXPECT_NEAR(rs.rel_error[0], rr.rel_error[0], 1e-9);
}

TEST(SmoothQuant, ErrorsNameTheProblem) {
  Linear l("model.layers.3.mlp.gate_proj", 4, 8);
  l.with_stats = false;
  std::vector<float> norm(8, 1.0f);
  Result r = run("smoothquant", Params(), {&l}, &norm);
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("needs calibration"), std::string::npos) << r.error;
  Params bad;
  bad.set("alpha", 1.5);
  l.with_stats = true;
  l.absmax.assign(8, 1.0f);
  r = run("smoothquant", bad, {&l}, &norm);
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("alpha"), std::string::npos) << r.error;
  std::vector<float> wrong(5, 1.0f);
  r = run("smoothquant", Params(), {&l}, &wrong);
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("prev_op"), std::string::npos) << r.error;
}
