// test_awq.cpp: the awq plugin through the registry with a forward callback
// implemented here (the compared module = the group's linears' outputs
// concatenated): the chosen scale's loss is no worse than ratio 0's or the
// identity's, it beats RTN on salient input channels, folding into a norm or
// into a previous Linear's rows keeps the float output, q/k skip the clip,
// clipping lowers the partial-dot error, and errors without calibration.
#include "algo_harness.hpp"

#include <algorithm>

using namespace algotest;

namespace {

// The module: y = [x W_0^T | x W_1^T | ...] on the group's shared input.
struct ConcatModule {
  std::vector<Linear*> linears;
  std::vector<float> input;  // [T, cols]
  int64_t T = 0, cols = 0, out = 0;
  int calls = 0;
  xq_group_forward fwd{};

  ConcatModule(std::vector<Linear*> ls, std::vector<float> x, int64_t t) : linears(std::move(ls)), input(std::move(x)), T(t) {
    cols = linears[0]->cols;
    for (Linear* l : linears) out += l->rows;
    fwd.struct_size = sizeof(fwd);
    fwd.ctx = this;
    fwd.n_tokens = T;
    fwd.in_features = cols;
    fwd.out_features = out;
    fwd.input = input.data();
    fwd.run = [](void* ctx, const float* const* weights, float* y) -> xq_status {
      auto* m = static_cast<ConcatModule*>(ctx);
      ++m->calls;
      int64_t off = 0;
      for (size_t i = 0; i < m->linears.size(); ++i) {
        Linear* l = m->linears[i];
        std::vector<float> w(weights && weights[i] ? std::vector<float>(weights[i], weights[i] + l->rows * l->cols) : l->w);
        std::vector<float> yi = matmul_t(m->input, m->T, w, l->rows, m->cols);
        for (int64_t t = 0; t < m->T; ++t)
          for (int64_t r = 0; r < l->rows; ++r) y[t * m->out + off + r] = yi[size_t(t * l->rows + r)];
        off += l->rows;
      }
      return XQ_OK;
    };
  }
  std::vector<float> eval(const std::vector<std::vector<float>>& ws) {
    std::vector<const float*> p;
    for (auto& w : ws) p.push_back(w.data());
    std::vector<float> y(static_cast<size_t>(T * out));
    fwd.run(this, p.data(), y.data());
    --calls;
    return y;
  }
};

// Inputs with a few salient channels (large mean |x|).
std::vector<float> salient_inputs(int64_t T, int64_t cols, std::mt19937& rng) {
  std::vector<float> x = randn(static_cast<size_t>(T * cols), rng);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < cols; j += 9) x[size_t(t * cols + j)] *= 12.0f;
  return x;
}

// Q(W * s) / s with the compressed-tensors quantizer (through the rtn plugin).
std::vector<float> fake_quant_scaled(const Linear& l, const std::vector<float>& s) {
  Linear t(l.name, l.rows, l.cols);
  t.scheme = l.scheme;
  for (int64_t r = 0; r < l.rows; ++r)
    for (int64_t j = 0; j < l.cols; ++j) t.w[size_t(r * l.cols + j)] = l.w[size_t(r * l.cols + j)] * s[size_t(j)];
  Result q = run("rtn", Params(), {&t});
  EXPECT_EQ(q.status, XQ_OK) << q.error;
  std::vector<float> d = dequantize(q.quant[0].get());
  for (int64_t r = 0; r < l.rows; ++r)
    for (int64_t j = 0; j < l.cols; ++j) d[size_t(r * l.cols + j)] /= s[size_t(j)];
  return d;
}

// AutoAWQ's ratio-0 duo-scaling candidate: s = 1 / (w_mean + 1e-4), normalised.
std::vector<float> ratio0_scales(const std::vector<Linear*>& ls, int64_t gs) {
  const int64_t cols = ls[0]->cols;
  std::vector<double> wm(static_cast<size_t>(cols), 0.0);
  int64_t rows = 0;
  for (Linear* l : ls) {
    for (int64_t r = 0; r < l->rows; ++r)
      for (int64_t c0 = 0; c0 < cols; c0 += gs) {
        float m = 0;
        for (int64_t j = c0; j < std::min(cols, c0 + gs); ++j) m = std::max(m, std::fabs(l->w[size_t(r * cols + j)]));
        for (int64_t j = c0; j < std::min(cols, c0 + gs); ++j) wm[size_t(j)] += std::fabs(l->w[size_t(r * cols + j)]) / (m + 1e-6f);
      }
    rows += l->rows;
  }
  std::vector<double> s(static_cast<size_t>(cols));
  double mx = 0, mn = 1e300;
  for (int64_t j = 0; j < cols; ++j) {
    s[size_t(j)] = std::max(1.0 / (wm[size_t(j)] / double(rows) + 1e-4), 1e-4);
    mx = std::max(mx, s[size_t(j)]);
    mn = std::min(mn, s[size_t(j)]);
  }
  std::vector<float> out(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) out[size_t(j)] = float(s[size_t(j)] / std::sqrt(mx * mn));
  return out;
}

}  // namespace

TEST(Awq, Needs) {
  EXPECT_EQ(needs("awq"), uint32_t(XQ_NEED_MEAN_ABS | XQ_NEED_SAMPLES | XQ_NEED_ABSMAX));
}

TEST(Awq, ChosenScaleBeatsRatioZeroAndIdentity) {
  std::mt19937 rng(21);
  const int64_t T = 96, cols = 64;
  std::vector<float> x = salient_inputs(T, cols, rng);
  Linear gate("l.mlp.gate_proj", 40, cols), up("l.mlp.up_proj", 40, cols);
  for (Linear* l : {&gate, &up}) {
    l->w = randn(static_cast<size_t>(l->rows * cols), rng, 0.05f);
    l->set_inputs(x, T);
    l->set_scheme(3, false, XQ_STRATEGY_GROUP, 32);
  }
  const std::vector<Linear> orig = {gate, up};
  ConcatModule m({&gate, &up}, x, T);
  const std::vector<float> y_ref = m.eval({gate.w, up.w});
  std::vector<float> norm(static_cast<size_t>(cols), 1.0f);
  Params p;
  p.set_bool("clip", false);
  Result r = run("awq", p, {&gate, &up}, &norm, 0, "mlp_gate_up", &m.fwd);
  ASSERT_EQ(r.status, XQ_OK) << r.error;
  EXPECT_EQ(m.calls, 1 + 1 + 20) << "y_ref, identity, 20 ratios";
  // The applied s, read back from the norm: s_j = 1 / norm'_j.
  std::vector<float> s(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) s[size_t(j)] = 1.0f / norm[size_t(j)];
  // Loss of what was returned (x @ (W_hat / s)^T) vs the candidates.
  std::vector<std::vector<float>> chosen;
  for (size_t i = 0; i < 2; ++i) {
    std::vector<float> d = dequantize(r.quant[i].get());
    for (int64_t rr = 0; rr < orig[i].rows; ++rr)
      for (int64_t j = 0; j < cols; ++j) d[size_t(rr * cols + j)] /= s[size_t(j)];
    chosen.push_back(d);
  }
  const double loss = mse(y_ref, m.eval(chosen));
  const std::vector<float> s0 = ratio0_scales({&gate, &up}, 32);
  std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
  const double loss0 = mse(y_ref, m.eval({fake_quant_scaled(orig[0], s0), fake_quant_scaled(orig[1], s0)}));
  const double loss_id = mse(y_ref, m.eval({fake_quant_scaled(orig[0], ones), fake_quant_scaled(orig[1], ones)}));
  EXPECT_LE(loss, loss0 * (1 + 1e-5));
  EXPECT_LE(loss, loss_id * (1 + 1e-5));
  EXPECT_LT(loss, 0.9 * loss_id) << "salient channels: scaling should clearly beat plain RTN";
  // rel_error is measured in the original basis: ||W - W_hat / s|| / ||W||.
  for (size_t i = 0; i < 2; ++i) {
    double d2 = 0, r2 = 0;
    for (size_t e = 0; e < chosen[i].size(); ++e) {
      d2 += (double(orig[i].w[e]) - chosen[i][e]) * (double(orig[i].w[e]) - chosen[i][e]);
      r2 += double(orig[i].w[e]) * orig[i].w[e];
    }
    EXPECT_GT(r.rel_error[i], 0.0);
    EXPECT_NEAR(std::sqrt(d2 / r2), r.rel_error[i], 1e-5 * r.rel_error[i]);
  }
}

TEST(Awq, FoldingKeepsTheFloatOutput) {
  std::mt19937 rng(22);
  const int64_t T = 48, cols = 32;
  std::vector<float> x = salient_inputs(T, cols, rng);
  // (a) into a norm: y = Linear(g * x_hat) with x_hat the normalised input.
  {
    Linear q("l.self_attn.q_proj", 16, cols), v("l.self_attn.v_proj", 16, cols);
    std::vector<float> g = randn(static_cast<size_t>(cols), rng, 0.2f);
    for (auto& e : g) e += 1.0f;
    std::vector<float> h(x.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < cols; ++j) h[size_t(t * cols + j)] = x[size_t(t * cols + j)] * g[size_t(j)];
    for (Linear* l : {&q, &v}) {
      l->w = randn(static_cast<size_t>(16 * cols), rng, 0.05f);
      l->set_inputs(h, T);
    }
    const std::vector<float> yq = matmul_t(h, T, q.w, 16, cols), yv = matmul_t(h, T, v.w, 16, cols);
    ConcatModule m({&q, &v}, h, T);
    std::vector<float> g2 = g;
    Params p;
    p.set_bool("quantize", false).set_bool("clip", false);
    Result r = run("awq", p, {&q, &v}, &g2, 0, "attn_qkv", &m.fwd);
    ASSERT_EQ(r.status, XQ_OK) << r.error;
    EXPECT_EQ(r.quant[0]->codes, nullptr);
    std::vector<float> h2(x.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < cols; ++j) h2[size_t(t * cols + j)] = x[size_t(t * cols + j)] * g2[size_t(j)];
    EXPECT_LT(max_rel_diff(yq, matmul_t(h2, T, q.w, 16, cols)), 2e-6);
    EXPECT_LT(max_rel_diff(yv, matmul_t(h2, T, v.w, 16, cols)), 2e-6);
    EXPECT_NE(g2, g) << "some scale was applied";
  }
  // (b) into a previous Linear's output rows: y = down(up(x)) (the up->down group).
  {
    const int64_t hidden = 20;
    std::vector<float> xin = randn(static_cast<size_t>(T * hidden), rng);
    std::vector<float> up = randn(static_cast<size_t>(cols * hidden), rng, 0.3f);
    for (int64_t j = 0; j < cols; j += 5)
      for (int64_t c = 0; c < hidden; ++c) up[size_t(j * hidden + c)] *= 8.0f;  // salient channels
    const std::vector<float> mid = matmul_t(xin, T, up, cols, hidden);
    Linear down("l.mlp.down_proj", 12, cols);
    down.w = randn(static_cast<size_t>(12 * cols), rng, 0.05f);
    down.set_inputs(mid, T);
    const std::vector<float> y0 = matmul_t(mid, T, down.w, 12, cols);
    ConcatModule m({&down}, mid, T);
    std::vector<float> up2 = up;
    Params p;
    p.set_bool("quantize", false).set_bool("clip", false);
    Result r = run("awq", p, {&down}, &up2, hidden, "mlp_down", &m.fwd);
    ASSERT_EQ(r.status, XQ_OK) << r.error;
    const std::vector<float> y1 = matmul_t(matmul_t(xin, T, up2, cols, hidden), T, down.w, 12, cols);
    EXPECT_LT(max_rel_diff(y0, y1), 2e-6);
    // Each row of up was divided by one factor.
    for (int64_t j = 0; j < cols; ++j) {
      const float f = up[size_t(j * hidden)] / up2[size_t(j * hidden)];
      for (int64_t c = 1; c < hidden; ++c)
        EXPECT_NEAR(up[size_t(j * hidden + c)] / up2[size_t(j * hidden + c)], f, 1e-5f * std::fabs(f));
    }
  }
}

TEST(Awq, ClipSkipsQueryAndKey) {
  std::mt19937 rng(23);
  const int64_t T = 64, cols = 32;
  std::vector<float> x = salient_inputs(T, cols, rng);
  Linear q("model.layers.0.self_attn.q_proj", 16, cols), k("model.layers.0.self_attn.k_proj", 8, cols),
      v("model.layers.0.self_attn.v_proj", 8, cols);
  for (Linear* l : {&q, &k, &v}) {
    l->w = randn(static_cast<size_t>(l->rows * cols), rng, 0.05f);
    for (int64_t r = 0; r < l->rows; ++r) l->w[size_t(r * cols + (r % cols))] = 0.8f;  // weight outliers
    l->set_inputs(x, T);
    l->set_scheme(3, false, XQ_STRATEGY_GROUP, 16);
  }
  const std::vector<float> q0 = q.w, k0 = k.w, v0 = v.w;
  std::vector<float> norm(static_cast<size_t>(cols), 1.0f);
  ConcatModule m({&q, &k, &v}, x, T);
  Params p;
  p.set_bool("quantize", false);
  Result r = run("awq", p, {&q, &k, &v}, &norm, 0, "attn_qkv", &m.fwd);
  ASSERT_EQ(r.status, XQ_OK) << r.error;
  // q and k: exactly W * s; v: W * s clamped somewhere.
  auto clamped = [&](const Linear& l, const std::vector<float>& w0) {
    int n = 0;
    for (int64_t rr = 0; rr < l.rows; ++rr)
      for (int64_t j = 0; j < cols; ++j) {
        const float scaled = w0[size_t(rr * cols + j)] / norm[size_t(j)];
        const float got = l.w[size_t(rr * cols + j)];
        EXPECT_LE(std::fabs(got), std::fabs(scaled) * (1 + 1e-6f) + 1e-12f);
        n += std::fabs(got - scaled) > 1e-6f * std::fabs(scaled) ? 1 : 0;
      }
    return n;
  };
  EXPECT_EQ(clamped(q, q0), 0);
  EXPECT_EQ(clamped(k, k0), 0);
  EXPECT_GT(clamped(v, v0), 0) << "v_proj's outliers should be clipped";
}

// Quantizing scales and clips every Linear of the group in place as the
// transform-only call does (Linear by Linear since 2026-12-05, so that one
// Linear's original is held at a time), and its codes are RTN of exactly
// those weights: a group of three with outliers, clipped, over two runs.
TEST(Awq, QuantizingLeavesTheTransformOnlyWeightsAndQuantizesThem) {
  std::mt19937 rng(25);
  const int64_t T = 64, cols = 32;
  std::vector<float> x = salient_inputs(T, cols, rng);
  auto group = [&](std::vector<Linear>& ls) {
    ls.clear();
    ls.emplace_back("model.layers.0.mlp.gate_proj", 16, cols);
    ls.emplace_back("model.layers.0.mlp.up_proj", 16, cols);
    ls.emplace_back("model.layers.0.mlp.other_proj", 8, cols);
  };
  std::vector<Linear> a, b;
  group(a);
  group(b);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i].w = randn(static_cast<size_t>(a[i].rows * cols), rng, 0.05f);
    for (int64_t r = 0; r < a[i].rows; ++r) a[i].w[size_t(r * cols + (r % cols))] = 0.8f;  // weight outliers
    b[i].w = a[i].w;
    for (Linear* l : {&a[i], &b[i]}) {
      l->set_inputs(x, T);
      l->set_scheme(4, true, XQ_STRATEGY_GROUP, 16);
    }
  }
  std::vector<float> norm_a(static_cast<size_t>(cols), 1.0f), norm_b = norm_a;
  ConcatModule ma({&a[0], &a[1], &a[2]}, x, T), mb({&b[0], &b[1], &b[2]}, x, T);
  Params transform_only;
  transform_only.set_bool("quantize", false);
  Result ra = run("awq", transform_only, {&a[0], &a[1], &a[2]}, &norm_a, 0, "mlp_gate_up", &ma.fwd);
  Result rb = run("awq", Params(), {&b[0], &b[1], &b[2]}, &norm_b, 0, "mlp_gate_up", &mb.fwd);
  ASSERT_EQ(ra.status, XQ_OK) << ra.error;
  ASSERT_EQ(rb.status, XQ_OK) << rb.error;
  EXPECT_EQ(norm_a, norm_b);
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].name);
    EXPECT_EQ(a[i].w, b[i].w);  // scaled and clipped the same, bit for bit
    Linear t(a[i].name, a[i].rows, cols);
    t.w = a[i].w;
    t.scheme = a[i].scheme;
    Result q = run("rtn", Params(), {&t});
    ASSERT_EQ(q.status, XQ_OK) << q.error;
    EXPECT_EQ(dequantize(q.quant[0].get()), dequantize(rb.quant[i].get()));
    EXPECT_GT(rb.rel_error[i], 0.0);
  }
}

TEST(Awq, ClipLowersThePartialDotError) {
  std::mt19937 rng(24);
  const int64_t T = 128, cols = 64, rows = 24;
  std::vector<float> x = salient_inputs(T, cols, rng);
  std::vector<float> w = randn(static_cast<size_t>(rows * cols), rng, 0.05f);
  for (int64_t r = 0; r < rows; ++r) w[size_t(r * cols + (r * 7) % cols)] = 0.6f;
  double err[2];
  for (int clip = 0; clip < 2; ++clip) {
    Linear l("l.mlp.down_proj", rows, cols);
    l.w = w;
    l.set_inputs(x, T);
    l.set_scheme(3, false, XQ_STRATEGY_GROUP, 32);
    Params p;
    p.set_bool("clip", clip == 1);
    Result r = run("awq", p, {&l}, nullptr, 0, "linear");  // no prev op: clip + quantize only
    ASSERT_EQ(r.status, XQ_OK) << r.error;
    const std::vector<float> d = dequantize(r.quant[0].get());
    err[clip] = mse(matmul_t(x, T, w, rows, cols), matmul_t(x, T, d, rows, cols));
  }
  EXPECT_LT(err[1], err[0]) << "clip " << err[1] << " no clip " << err[0];
}

TEST(Awq, ErrorsNameTheProblem) {
  std::mt19937 rng(25);
  Linear l("model.layers.2.mlp.gate_proj", 8, 16);
  l.w = randn(static_cast<size_t>(8 * 16), rng);
  l.set_inputs(randn(static_cast<size_t>(16 * 16), rng), 16);
  std::vector<float> norm(16, 1.0f);
  Result r = run("awq", Params(), {&l}, &norm, 0, "mlp_gate_up", nullptr);
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("awq needs calibration"), std::string::npos) << r.error;
  l.mean_abs.clear();
  r = run("awq", Params(), {&l}, &norm, 0, "mlp_gate_up", nullptr);
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("gate_proj"), std::string::npos) << r.error;
}
