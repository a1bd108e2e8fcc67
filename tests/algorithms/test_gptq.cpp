// test_gptq.cpp: the gptq plugin through the registry: identity Hessian ==
// RTN (a known property), lower output error than RTN on a correlated
// Hessian, agreement with a literal transcription of the reference loop
// (IST-DASLab/gptq gptq.py GPTQ.fasterquant) incl. act-order and groups that straddle
// blocks, act-order g_idx consistency, static groups, ragged last group,
// dead columns, automatic damping increase, and errors.
#include "algo_harness.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>

using namespace algotest;

namespace {

// Correlated calibration inputs: x = z * A with a random mixing A and a few
// strong channels, so X^T X is far from diagonal.
std::vector<float> correlated_inputs(int64_t T, int64_t cols, std::mt19937& rng) {
  std::vector<float> z = randn(static_cast<size_t>(T * cols), rng), a = randn(static_cast<size_t>(cols * cols), rng, 0.3f);
  for (int64_t j = 0; j < cols; ++j) a[size_t(j * cols + j)] += 1.0f;
  std::vector<float> x(static_cast<size_t>(T * cols), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < cols; ++k) {
      const float zk = z[size_t(t * cols + k)];
      for (int64_t j = 0; j < cols; ++j) x[size_t(t * cols + j)] += zk * a[size_t(k * cols + j)];
    }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < cols; j += 7) x[size_t(t * cols + j)] *= 4.0f;
  return x;
}

// ||X (W - W_hat)^T||^2 / T: the layer-output error GPTQ minimises.
double output_error(const std::vector<float>& x, int64_t T, const std::vector<float>& w,
                    const std::vector<float>& wq, int64_t rows, int64_t cols) {
  std::vector<float> d(w.size());
  for (size_t i = 0; i < w.size(); ++i) d[i] = w[i] - wq[i];
  std::vector<float> y = matmul_t(x, T, d, rows, cols);
  double s = 0;
  for (float v : y) s += double(v) * v;
  return s / double(T);
}

// Ascending-diag helper: rank of each column in the act-order permutation.
std::vector<int64_t> act_order_perm(const std::vector<float>& h, int64_t cols) {
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return h[size_t(a * cols + a)] > h[size_t(b * cols + b)]; });
  return perm;
}

// A literal transcription of the reference loop (gptq.py fasterquant,
// non-static groups) in double precision, with the compressed-tensors
// quantizer, used to check the plugin's blocked/threaded version.
struct RefOut {
  std::vector<float> deq;  // un-permuted
};
RefOut reference_gptq(const std::vector<float>& w0, const std::vector<float>& hx, uint64_t tokens, int64_t rows,
                      int64_t cols, int bits, bool sym, int64_t gs, int64_t block, double percdamp, bool act_order) {
  const int n = int(cols);
  std::vector<double> W(w0.begin(), w0.end()), H(static_cast<size_t>(n * n));
  for (int i = 0; i < n * n; ++i) H[size_t(i)] = double(hx[size_t(i)]) * 2.0 / double(tokens);
  for (int j = 0; j < n; ++j)
    if (H[size_t(j * n + j)] == 0) {
      H[size_t(j * n + j)] = 1;
      for (int r = 0; r < rows; ++r) W[size_t(r * n + j)] = 0;
    }
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H[size_t(a * n + a)] > H[size_t(b * n + b)]; });
    std::vector<double> W2(W.size()), H2(H.size());
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < n; ++k) W2[size_t(r * n + k)] = W[size_t(r * n + perm[size_t(k)])];
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b) H2[size_t(a * n + b)] = H[size_t(perm[size_t(a)] * n + perm[size_t(b)])];
    W.swap(W2);
    H.swap(H2);
  }
  double mean = 0;
  for (int j = 0; j < n; ++j) mean += H[size_t(j * n + j)];
  mean /= n;
  for (int j = 0; j < n; ++j) H[size_t(j * n + j)] += percdamp * mean;
  // Hinv = H^-1 (Gauss-Jordan), U = chol_upper(Hinv): Hinv = U^T U.
  std::vector<double> A = H, inv(static_cast<size_t>(n * n), 0.0);
  for (int i = 0; i < n; ++i) inv[size_t(i * n + i)] = 1;
  for (int c = 0; c < n; ++c) {
    const double p = A[size_t(c * n + c)];
    for (int j = 0; j < n; ++j) {
      A[size_t(c * n + j)] /= p;
      inv[size_t(c * n + j)] /= p;
    }
    for (int r = 0; r < n; ++r)
      if (r != c) {
        const double f = A[size_t(r * n + c)];
        for (int j = 0; j < n; ++j) {
          A[size_t(r * n + j)] -= f * A[size_t(c * n + j)];
          inv[size_t(r * n + j)] -= f * inv[size_t(c * n + j)];
        }
      }
  }
  // Upper Cholesky U with inv = U^T U: U = L^T of the lower factor of the
  // reversed matrix is not needed; do it directly row by row.
  std::vector<double> U(static_cast<size_t>(n * n), 0.0);
  for (int i = 0; i < n; ++i) {
    double s = inv[size_t(i * n + i)];
    for (int k = 0; k < i; ++k) s -= U[size_t(k * n + i)] * U[size_t(k * n + i)];
    U[size_t(i * n + i)] = std::sqrt(s);
    for (int j = i + 1; j < n; ++j) {
      double t = inv[size_t(i * n + j)];
      for (int k = 0; k < i; ++k) t -= U[size_t(k * n + i)] * U[size_t(k * n + j)];
      U[size_t(i * n + j)] = t / U[size_t(i * n + i)];
    }
  }
  const int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  std::vector<double> Q(W.size()), scale(static_cast<size_t>(rows)), zp(static_cast<size_t>(rows));
  auto params = [&](int r, int c0, int len) {
    double lo = 0, hi = 0;
    for (int j = c0; j < std::min(n, c0 + len); ++j) {
      lo = std::min(lo, W[size_t(r * n + j)]);
      hi = std::max(hi, W[size_t(r * n + j)]);
    }
    float sc = sym ? float(std::max(-lo, hi)) / (float(qmax - qmin) / 2.0f) : float(hi - lo) / float(qmax - qmin);
    if (sc == 0) sc = std::numeric_limits<float>::epsilon();
    scale[size_t(r)] = sc;
    zp[size_t(r)] = sym ? 0.0 : std::clamp(std::nearbyint(double(qmin) - lo / sc), double(qmin), double(qmax));
  };
  if (gs >= n)
    for (int r = 0; r < rows; ++r) params(r, 0, n);
  for (int i1 = 0; i1 < n; i1 += int(block)) {
    const int i2 = std::min(i1 + int(block), n), count = i2 - i1;
    std::vector<double> W1(static_cast<size_t>(rows * count)), Err(static_cast<size_t>(rows * count));
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < count; ++i) W1[size_t(r * count + i)] = W[size_t(r * n + i1 + i)];
    for (int i = 0; i < count; ++i) {
      if (gs < n && (i1 + i) % gs == 0)
        for (int r = 0; r < rows; ++r) params(r, i1 + i, int(gs));  // W: block-start values
      const double d = U[size_t((i1 + i) * n + i1 + i)];
      for (int r = 0; r < rows; ++r) {
        const double x = W1[size_t(r * count + i)];
        const double q = (std::clamp(std::nearbyint(float(x) / float(scale[size_t(r)]) + zp[size_t(r)]), double(qmin),
                                     double(qmax)) -
                          zp[size_t(r)]) *
                         scale[size_t(r)];
        Q[size_t(r * n + i1 + i)] = q;
        const double e = (x - q) / d;
        Err[size_t(r * count + i)] = e;
        for (int j = i; j < count; ++j) W1[size_t(r * count + j)] -= e * U[size_t((i1 + i) * n + i1 + j)];
      }
    }
    for (int r = 0; r < rows; ++r)
      for (int j = i2; j < n; ++j) {
        double s = 0;
        for (int i = 0; i < count; ++i) s += Err[size_t(r * count + i)] * U[size_t((i1 + i) * n + j)];
        W[size_t(r * n + j)] -= s;
      }
  }
  RefOut out;
  out.deq.resize(W.size());
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < n; ++k) out.deq[size_t(r * n + perm[size_t(k)])] = float(Q[size_t(r * n + k)]);
  return out;
}

double fraction_equal(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += std::fabs(a[i] - b[i]) <= tol ? 1 : 0;
  return double(same) / double(a.size());
}

}  // namespace

TEST(Gptq, NeedsHessian) { EXPECT_EQ(needs("gptq"), uint32_t(XQ_NEED_HESSIAN)); }

TEST(Gptq, IdentityHessianEqualsRtn) {
  // H = c*I: U is diagonal, no error propagates, every column is rounded on
  // its own with the same group parameters RTN picks. Ragged: 20 = 8+8+4.
  std::mt19937 rng(1);
  for (bool sym : {true, false})
    for (int64_t gs : {8, 20}) {
      Linear g("m.fc", 12, 20), r("m.fc", 12, 20);
      g.w = randn(static_cast<size_t>(12 * 20), rng);
      r.w = g.w;
      g.set_scheme(4, sym, gs < 20 ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL, gs);
      r.set_scheme(4, sym, gs < 20 ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL, gs);
      g.hessian.assign(20 * 20, 0.0f);
      for (int j = 0; j < 20; ++j) g.hessian[size_t(j * 20 + j)] = 50.0f;
      g.tokens = 100;
      Params p;
      p.set_int("block_size", 8);
      Result rg = run("gptq", p, {&g});
      Result rr = run("rtn", Params(), {&r});
      ASSERT_EQ(rg.status, XQ_OK) << rg.error;
      ASSERT_EQ(rr.status, XQ_OK) << rr.error;
      const xq_quant_tensor &a = rg.quant[0].get(), &b = rr.quant[0].get();
      ASSERT_EQ(a.n_groups, b.n_groups);
      EXPECT_EQ(a.n_groups, gs < 20 ? 3 : 1);
      for (int64_t i = 0; i < 12 * 20; ++i) ASSERT_EQ(a.codes[i], b.codes[i]) << "sym " << sym << " i " << i;
      for (int64_t i = 0; i < 12 * a.n_groups; ++i) {
        ASSERT_EQ(a.scales[i], b.scales[i]) << i;
        if (!sym) { ASSERT_EQ(a.zero_points[i], b.zero_points[i]) << i; }
      }
      EXPECT_EQ(a.g_idx, nullptr);
      EXPECT_NEAR(rg.rel_error[0], rr.rel_error[0], 1e-9);
    }
}

TEST(Gptq, BeatsRtnOnCorrelatedHessian) {
  std::mt19937 rng(2);
  const int64_t T = 512, cols = 96, rows = 40;
  std::vector<float> x = correlated_inputs(T, cols, rng);
  for (bool act_order : {false, true}) {
    Linear g("m.fc", rows, cols), r("m.fc", rows, cols);
    g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
    r.w = g.w;
    g.set_inputs(x, T);
    g.set_scheme(4, false, XQ_STRATEGY_GROUP, 32);
    r.set_scheme(4, false, XQ_STRATEGY_GROUP, 32);
    Params p;
    p.set_bool("act_order", act_order);
    Result rg = run("gptq", p, {&g});
    Result rr = run("rtn", Params(), {&r});
    ASSERT_EQ(rg.status, XQ_OK) << rg.error;
    const double eg = output_error(x, T, g.w, dequantize(rg.quant[0].get()), rows, cols);
    const double er = output_error(x, T, r.w, dequantize(rr.quant[0].get()), rows, cols);
    EXPECT_LT(eg, 0.8 * er) << "act_order " << act_order << ": gptq " << eg << " rtn " << er;
    std::printf("act_order %d: output error gptq %.6g, rtn %.6g\n", int(act_order), eg, er);
  }
}

TEST(Gptq, MatchesTheReferenceLoop) {
  // Groups of 24 with blocks of 16: groups start mid-block and straddle
  // block ends, the case where the reference reads block-start weights.
  std::mt19937 rng(3);
  const int64_t T = 256, cols = 72, rows = 24;
  std::vector<float> x = correlated_inputs(T, cols, rng);
  for (bool act_order : {false, true})
    for (bool sym : {true, false}) {
      Linear g("m.fc", rows, cols);
      g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
      g.set_inputs(x, T);
      g.set_scheme(4, sym, XQ_STRATEGY_GROUP, 24);
      Params p;
      p.set_bool("act_order", act_order).set_int("block_size", 16);
      Result rg = run("gptq", p, {&g});
      ASSERT_EQ(rg.status, XQ_OK) << rg.error;
      RefOut ref = reference_gptq(g.w, g.hessian, g.tokens, rows, cols, 4, sym, 24, 16, 0.01, act_order);
      const std::vector<float> ours = dequantize(rg.quant[0].get());
      // Float vs double rounding may flip a few codes at .5 boundaries.
      const double same = fraction_equal(ours, ref.deq, 1e-5f);
      EXPECT_GE(same, 0.98) << "act_order " << act_order << " sym " << sym;
      const double eo = output_error(x, T, g.w, ours, rows, cols), er = output_error(x, T, g.w, ref.deq, rows, cols);
      std::printf("act_order %d sym %d: %.4f of values equal to the reference, output error %.6g vs %.6g\n",
                  int(act_order), int(sym), same, eo, er);
      EXPECT_NEAR(eo, er, 0.02 * er);
    }
}

TEST(Gptq, ActOrderGidxIsConsistent) {
  std::mt19937 rng(4);
  const int64_t T = 256, cols = 70, rows = 16, gs = 16;  // ragged: 70 = 4*16 + 6
  std::vector<float> x = correlated_inputs(T, cols, rng);
  Linear g("m.fc", rows, cols);
  g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
  g.set_inputs(x, T);
  g.set_scheme(4, true, XQ_STRATEGY_GROUP, gs);
  Params p;
  p.set_bool("act_order", true);
  Result r = run("gptq", p, {&g});
  ASSERT_EQ(r.status, XQ_OK) << r.error;
  const xq_quant_tensor& q = r.quant[0].get();
  ASSERT_NE(q.g_idx, nullptr);
  EXPECT_EQ(q.n_groups, 5);
  // g_idx[c] = (position of c in descending-diag order) / gs.
  const std::vector<int64_t> perm = act_order_perm(g.hessian, cols);
  std::vector<int> per_group(5, 0);
  for (int64_t k = 0; k < cols; ++k) {
    EXPECT_EQ(q.g_idx[perm[size_t(k)]], int32_t(k / gs)) << k;
    ++per_group[size_t(q.g_idx[perm[size_t(k)]])];
  }
  EXPECT_EQ(per_group, (std::vector<int>{16, 16, 16, 16, 6}));
  // Dequantizing through g_idx reproduces the W_hat behind rel_error, and
  // QuantTensor::dequantize_row (the host's path) agrees.
  const std::vector<float> deq = dequantize(q);
  double d2 = 0, r2 = 0;
  for (size_t i = 0; i < deq.size(); ++i) {
    d2 += (double(g.w[i]) - deq[i]) * (double(g.w[i]) - deq[i]);
    r2 += double(g.w[i]) * g.w[i];
  }
  EXPECT_NEAR(std::sqrt(d2 / r2), r.rel_error[0], 1e-6);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t rr = 0; rr < rows; ++rr) {
    r.quant[0].dequantize_row(rr, row.data());
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(row[size_t(c)], deq[size_t(rr * cols + c)]);
  }
  // Without g_idx the same codes would dequantize differently: the g_idx is needed.
  xq_quant_tensor no_gidx = q;
  no_gidx.g_idx = nullptr;
  EXPECT_NE(dequantize(no_gidx), deq);
}

TEST(Gptq, StaticGroupsUseOriginalWeights) {
  std::mt19937 rng(5);
  const int64_t T = 256, cols = 48, rows = 12;
  std::vector<float> x = correlated_inputs(T, cols, rng);
  Linear g("m.fc", rows, cols), r("m.fc", rows, cols);
  g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
  r.w = g.w;
  g.set_inputs(x, T);
  g.set_scheme(4, false, XQ_STRATEGY_GROUP, 16);
  r.set_scheme(4, false, XQ_STRATEGY_GROUP, 16);
  Params p;
  p.set_bool("act_order", true).set_bool("static_groups", true);
  Result rg = run("gptq", p, {&g});
  Result rr = run("rtn", Params(), {&r});
  ASSERT_EQ(rg.status, XQ_OK) << rg.error;
  EXPECT_EQ(rg.quant[0]->g_idx, nullptr) << "static groups keep the original group order";
  for (int64_t i = 0; i < rows * 3; ++i) {
    ASSERT_EQ(rg.quant[0]->scales[i], rr.quant[0]->scales[i]) << i;
    ASSERT_EQ(rg.quant[0]->zero_points[i], rr.quant[0]->zero_points[i]) << i;
  }
  const double eg = output_error(x, T, g.w, dequantize(rg.quant[0].get()), rows, cols);
  const double er = output_error(x, T, r.w, dequantize(rr.quant[0].get()), rows, cols);
  EXPECT_LT(eg, er);
}

TEST(Gptq, DeadColumnsAreZero) {
  std::mt19937 rng(6);
  const int64_t T = 128, cols = 32, rows = 8;
  std::vector<float> x = correlated_inputs(T, cols, rng);
  for (int64_t t = 0; t < T; ++t) x[size_t(t * cols + 5)] = x[size_t(t * cols + 20)] = 0.0f;  // never active
  Linear g("m.fc", rows, cols);
  g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
  g.set_inputs(x, T);
  g.set_scheme(4, false, XQ_STRATEGY_GROUP, 16);
  Result r = run("gptq", Params(), {&g});
  ASSERT_EQ(r.status, XQ_OK) << r.error;
  const std::vector<float> deq = dequantize(r.quant[0].get());
  for (int64_t rr = 0; rr < rows; ++rr) {
    EXPECT_EQ(deq[size_t(rr * cols + 5)], 0.0f);
    EXPECT_EQ(deq[size_t(rr * cols + 20)], 0.0f);
  }
}

TEST(Gptq, DampingIncreasesOnAnIndefiniteHessian) {
  // H = A^T A - 0.05 * mean(diag) * I with rank(A^T A) < cols: the smallest
  // eigenvalue is -0.05 m, so damp 0.01 fails and damp 0.1 succeeds.
  std::mt19937 rng(7);
  const int64_t cols = 24, rows = 8, T = 6;
  std::vector<float> a = randn(static_cast<size_t>(T * cols), rng);
  Linear g("model.layers.9.mlp.down_proj", rows, cols);
  g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
  g.set_inputs(a, T);
  double m = 0;
  for (int64_t j = 0; j < cols; ++j) m += g.hessian[size_t(j * cols + j)];
  m /= double(cols);
  for (int64_t j = 0; j < cols; ++j) g.hessian[size_t(j * cols + j)] -= float(0.05 * m);
  g.set_scheme(4, true, XQ_STRATEGY_GROUP, 8);
  {
    LogCapture log;
    Result r = run("gptq", Params(), {&g});
    ASSERT_EQ(r.status, XQ_OK) << r.error;
    EXPECT_NE(log.text().find("Cholesky failed with damp 0.01, retrying with damp 0.1"), std::string::npos)
        << log.text();
    EXPECT_NE(log.text().find("succeeded with damp 0.1"), std::string::npos) << log.text();
    EXPECT_NE(log.text().find("model.layers.9.mlp.down_proj"), std::string::npos);
    EXPECT_NE(r.quant[0]->codes, nullptr);
    EXPECT_LT(r.rel_error[0], 0.5);
  }
  Params capped;
  capped.set("damp_limit", 0.05);
  Result r = run("gptq", capped, {&g});
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("not positive definite"), std::string::npos) << r.error;
  EXPECT_EQ(r.quant[0]->codes, nullptr) << "a failed call attaches nothing";
}

// Linears handed one Hessian buffer (q/k/v, gate/up) share its
// factorisation: the outputs are the bytes of quantizing each alone, and the
// log says which Linear's factorisation the others took.
TEST(Gptq, LinearsOfOneHessianShareItsFactorisation) {
  std::mt19937 rng(11);
  const int64_t T = 256, cols = 64;
  std::vector<float> x = correlated_inputs(T, cols, rng);
  for (bool act_order : {false, true}) {
    Linear gate("model.layers.0.mlp.gate_proj", 24, cols), up("model.layers.0.mlp.up_proj", 40, cols);
    for (Linear* l : {&gate, &up}) {
      l->w = randn(static_cast<size_t>(l->rows * cols), rng, 0.1f);
      l->set_inputs(x, T);
      l->set_scheme(4, false, XQ_STRATEGY_GROUP, 16);
    }
    Params p;
    p.set_bool("act_order", act_order);
    Result alone_gate = run("gptq", p, {&gate}), alone_up = run("gptq", p, {&up});
    ASSERT_EQ(alone_gate.status, XQ_OK) << alone_gate.error;
    ASSERT_EQ(alone_up.status, XQ_OK) << alone_up.error;
    up.hessian_of = &gate;
    LogCapture log;
    Result together = run("gptq", p, {&gate, &up});
    ASSERT_EQ(together.status, XQ_OK) << together.error;
    EXPECT_NE(log.text().find("model.layers.0.mlp.up_proj: GPTQ objective"), std::string::npos) << log.text();
    EXPECT_NE(log.text().find("factorisation shared with model.layers.0.mlp.gate_proj"), std::string::npos)
        << log.text();
    for (auto [shared, alone] : {std::pair{&together.quant[0], &alone_gate.quant[0]},
                                 std::pair{&together.quant[1], &alone_up.quant[0]}}) {
      const xq_quant_tensor &a = shared->get(), &b = alone->get();
      const size_t n = size_t(a.rows * a.cols), ns = size_t(a.rows * a.n_groups);
      EXPECT_TRUE(std::equal(a.codes, a.codes + n, b.codes)) << "act_order " << act_order;
      EXPECT_TRUE(std::equal(a.scales, a.scales + ns, b.scales)) << "act_order " << act_order;
      EXPECT_TRUE(std::equal(a.zero_points, a.zero_points + ns, b.zero_points)) << "act_order " << act_order;
      if (act_order) {
        EXPECT_TRUE(std::equal(a.g_idx, a.g_idx + a.cols, b.g_idx));
      }
    }
    EXPECT_EQ(together.rel_error[0], alone_gate.rel_error[0]);
    EXPECT_EQ(together.rel_error[1], alone_up.rel_error[0]);
  }
}

TEST(Gptq, ErrorsNameTheProblem) {
  Linear g("model.layers.1.self_attn.o_proj", 4, 8);
  Result r = run("gptq", Params(), {&g});  // no Hessian
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("needs calibration"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("o_proj"), std::string::npos) << r.error;
  g.hessian.assign(64, 0.0f);
  g.tokens = 4;
  g.hessian[9] = std::nanf("");
  r = run("gptq", Params(), {&g});
  EXPECT_EQ(r.status, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(r.error.find("not finite"), std::string::npos) << r.error;
}

TEST(Gptq, MatchesTheReferenceLoopPerChannel) {
  // The per-channel path (one scale per row from the original W, e.g. a
  // 576-wide Linear at group_size 128, which compressed-tensors cannot store
  // in whole groups): the same transcription with one group spanning the row,
  // several blocks, inputs with a few strong channels.
  std::mt19937 rng(11);
  const int64_t T = 512, cols = 72, rows = 24;
  std::vector<float> x = correlated_inputs(T, cols, rng);
  for (bool act_order : {false, true})
    for (bool sym : {true, false}) {
      Linear g("m.fc", rows, cols);
      g.w = randn(static_cast<size_t>(rows * cols), rng, 0.1f);
      g.set_inputs(x, T);
      g.set_scheme(4, sym, XQ_STRATEGY_CHANNEL, 0);
      Params p;
      p.set_bool("act_order", act_order).set_int("block_size", 16);
      Result rg = run("gptq", p, {&g});
      ASSERT_EQ(rg.status, XQ_OK) << rg.error;
      RefOut ref = reference_gptq(g.w, g.hessian, g.tokens, rows, cols, 4, sym, cols, 16, 0.01, act_order);
      const std::vector<float> ours = dequantize(rg.quant[0].get());
      const double same = fraction_equal(ours, ref.deq, 1e-5f);
      EXPECT_GE(same, 0.98) << "act_order " << act_order << " sym " << sym;
      const double eo = output_error(x, T, g.w, ours, rows, cols), er = output_error(x, T, g.w, ref.deq, rows, cols);
      EXPECT_NEAR(eo, er, 0.02 * er);
    }
}
