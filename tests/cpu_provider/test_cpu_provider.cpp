// test_cpu_provider.cpp: every op of the `cpu` kernel provider against a
// straightforward double-precision reference written here, on fresh random
// inputs (never zeros), through the real plugin loaded by a Runtime. Also the
// quantized path issue 2 relies on: DEQUANTIZE must reproduce
// (code - zp) * scale exactly and QMATMUL must match the reference GEMM on
// the dequantized weight (weight-only) or on int8-quantized activations (W8A8).
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

using namespace xquant;

namespace {

struct Fixture {
  Runtime rt{RuntimeOptions{}};
  LoadedPlugin* p = nullptr;
  Fixture() { p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"); }
  const xq_kernel_vtable& vt() const { return p->kernel(); }
  xq_status run(const xq_op& op) const { return vt().run_op(p->state, &op); }
  bool supports(const xq_op& op) const { return vt().supports_op(p->state, &op) != 0; }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

std::mt19937 rng(12345);

std::vector<float> rnd(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = d(rng); while (x == 0.0f);
  }
  return v;
}

xq_device_tensor T(xq_dtype dt, std::initializer_list<int64_t> shape, const void* data) {
  return xquant::sdk::device_tensor(dt, shape, data);
}

xq_op Op(xq_op_type type) { return xquant::sdk::make_op(type); }

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double e = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (e > worst) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << ": worst error at " << at << " got " << got[at] << " want " << want[at];
}

}  // namespace

TEST(CpuProvider, LoadsWithPositiveScoreAndCapabilities) {
  ASSERT_NE(fx().p, nullptr) << "cpu provider not loaded";
  const char* why = nullptr;
  EXPECT_GT(fx().vt().score(fx().p->state, &why), 0u);
  EXPECT_TRUE(fx().p->has_capability("op:qmatmul"));
  EXPECT_TRUE(fx().p->has_capability("layout:cpu-int8-group"));
}

TEST(CpuProvider, MatmulWithBiasAndGemv) {
  for (int64_t M : {1, 7}) {
    int64_t K = 33, N = 19;
    auto x = rnd(M * K), w = rnd(N * K), b = rnd(N);
    std::vector<float> y(M * N, 123.0f);
    auto op = Op(XQ_OP_MATMUL);
    op.src[0] = T(XQ_DTYPE_F32, {M, K}, x.data());
    op.src[1] = T(XQ_DTYPE_F32, {N, K}, w.data());
    op.src[2] = T(XQ_DTYPE_F32, {N}, b.data());
    op.dst = T(XQ_DTYPE_F32, {M, N}, y.data());
    ASSERT_TRUE(fx().supports(op));
    ASSERT_EQ(fx().run(op), XQ_OK);
    std::vector<double> ref(M * N);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = b[n];
        for (int64_t k = 0; k < K; ++k) s += double(x[m * K + k]) * w[n * K + k];
        ref[m * N + n] = s;
      }
    expect_close(y, ref, 1e-5, "matmul");
  }
}

TEST(CpuProvider, RmsNorm) {
  int64_t M = 5, D = 24;
  auto x = rnd(M * D, -3, 3), w = rnd(D);
  std::vector<float> y(M * D);
  auto op = Op(XQ_OP_RMS_NORM);
  op.src[0] = T(XQ_DTYPE_F32, {M, D}, x.data());
  op.src[1] = T(XQ_DTYPE_F32, {D}, w.data());
  op.dst = T(XQ_DTYPE_F32, {M, D}, y.data());
  op.f[0] = 1e-5;
  ASSERT_EQ(fx().run(op), XQ_OK);
  std::vector<double> ref(M * D);
  for (int64_t m = 0; m < M; ++m) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(x[m * D + i]) * x[m * D + i];
    double inv = 1.0 / std::sqrt(ss / D + 1e-5);
    for (int64_t i = 0; i < D; ++i) ref[m * D + i] = x[m * D + i] * inv * w[i];
  }
  expect_close(y, ref, 1e-5, "rms_norm");
}

TEST(CpuProvider, RopeBothPairingsPartialRotaryFactorsAndScale) {
  int64_t Tn = 4, H = 3, D = 10;
  std::vector<int32_t> pos = {0, 3, 17, 250};
  for (int pairing : {0, 1})
    for (bool factors : {false, true}) {
      int64_t rot = 8;
      auto x = rnd(Tn * H * D);
      auto orig = x;
      auto fac = rnd(rot / 2, 1.0f, 4.0f);
      double scale = 0.5;
      auto op = Op(XQ_OP_ROPE);
      op.dst = T(XQ_DTYPE_F32, {Tn, H, D}, x.data());
      op.src[0] = op.dst;
      op.src[1] = T(XQ_DTYPE_I32, {Tn}, pos.data());
      if (factors) op.src[2] = T(XQ_DTYPE_F32, {rot / 2}, fac.data());
      op.i[0] = pairing;
      op.i[1] = rot;
      op.f[0] = 10000.0;
      op.f[1] = scale;
      ASSERT_EQ(fx().run(op), XQ_OK);
      std::vector<double> ref(orig.begin(), orig.end());
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t i = 0; i < rot / 2; ++i) {
            double inv = 1.0 / std::pow(10000.0, 2.0 * i / rot) / (factors ? fac[i] : 1.0);
            double a = pos[t] * scale * inv;
            int64_t i0 = pairing == 0 ? i : 2 * i, i1 = pairing == 0 ? i + rot / 2 : 2 * i + 1;
            double x0 = orig[(t * H + h) * D + i0], x1 = orig[(t * H + h) * D + i1];
            ref[(t * H + h) * D + i0] = x0 * std::cos(a) - x1 * std::sin(a);
            ref[(t * H + h) * D + i1] = x0 * std::sin(a) + x1 * std::cos(a);
          }
      expect_close(x, ref, 2e-4, pairing == 0 ? "rope neox" : "rope norm");
    }
}

TEST(CpuProvider, CausalGqaAttentionWithOffset) {
  // T = 5 takes the per-(query, head) path, T = 37 the SGEMM path.
  for (auto [Tn, start, S] : {std::tuple<int64_t, int64_t, int64_t>{5, 3, 9}, {37, 4, 45}}) {
  int64_t H = 4, KVH = 2, D = 8;
  auto q = rnd(Tn * H * D, -2, 2), k = rnd(S * KVH * D, -2, 2), v = rnd(S * KVH * D);
  std::vector<float> y(Tn * H * D);
  double scale = 1.0 / std::sqrt(double(D));
  auto op = Op(XQ_OP_ATTENTION);
  op.src[0] = T(XQ_DTYPE_F32, {Tn, H, D}, q.data());
  op.src[1] = T(XQ_DTYPE_F32, {S, KVH, D}, k.data());
  op.src[2] = T(XQ_DTYPE_F32, {S, KVH, D}, v.data());
  op.dst = T(XQ_DTYPE_F32, {Tn, H, D}, y.data());
  op.f[0] = scale;
  op.i[0] = start;
  ASSERT_EQ(fx().run(op), XQ_OK);
  std::vector<double> ref(Tn * H * D, 0.0);
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t h = 0; h < H; ++h) {
      int64_t kh = h / (H / KVH);
      std::vector<double> p;
      double mx = -1e300;
      for (int64_t s = 0; s <= start + t; ++s) {
        double d = 0;
        for (int64_t i = 0; i < D; ++i) d += double(q[(t * H + h) * D + i]) * k[(s * KVH + kh) * D + i];
        p.push_back(d * scale);
        mx = std::max(mx, d * scale);
      }
      double z = 0;
      for (auto& e : p) z += (e = std::exp(e - mx));
      for (int64_t s = 0; s < (int64_t)p.size(); ++s)
        for (int64_t i = 0; i < D; ++i) ref[(t * H + h) * D + i] += p[s] / z * v[(s * KVH + kh) * D + i];
    }
  expect_close(y, ref, 1e-5, "attention");
  // Keys must cover start + T positions.
  op.i[0] = S;
  EXPECT_FALSE(fx().supports(op));
  }
}

TEST(CpuProvider, ElementwiseOps) {
  int64_t M = 6, N = 11;
  auto a = rnd(M * N, -4, 4), b = rnd(M * N), r = rnd(N);
  std::vector<float> y(M * N);
  auto op = Op(XQ_OP_SWIGLU);
  op.src[0] = T(XQ_DTYPE_F32, {M, N}, a.data());
  op.src[1] = T(XQ_DTYPE_F32, {M, N}, b.data());
  op.dst = T(XQ_DTYPE_F32, {M, N}, y.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  std::vector<double> ref(M * N);
  for (int64_t i = 0; i < M * N; ++i) ref[i] = a[i] / (1.0 + std::exp(-double(a[i]))) * b[i];
  expect_close(y, ref, 1e-6, "swiglu");

  op.type = XQ_OP_ADD;
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (int64_t i = 0; i < M * N; ++i) ref[i] = double(a[i]) + b[i];
  expect_close(y, ref, 1e-7, "add");

  op.type = XQ_OP_MUL;
  op.src[1] = T(XQ_DTYPE_F32, {N}, r.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (int64_t i = 0; i < M * N; ++i) ref[i] = double(a[i]) * r[i % N];
  expect_close(y, ref, 1e-7, "mul broadcast");

  // In place (dst aliases src[0]) is how the engine adds residuals.
  op.type = XQ_OP_ADD;
  auto a2 = a;
  op.src[0] = T(XQ_DTYPE_F32, {M, N}, a2.data());
  op.dst = op.src[0];
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (int64_t i = 0; i < M * N; ++i) ref[i] = double(a[i]) + r[i % N];
  expect_close(a2, ref, 1e-7, "add in place broadcast");

  op.type = XQ_OP_SWIGLU;  // no broadcast for swiglu
  EXPECT_FALSE(fx().supports(op));
}

TEST(CpuProvider, GetRowsF32AndBf16) {
  int64_t V = 10, D = 7;
  auto table = rnd(V * D);
  std::vector<uint16_t> tb(V * D);
  for (size_t i = 0; i < tb.size(); ++i) tb[i] = sdk::f32_to_bf16(table[i]);
  std::vector<int32_t> ids = {3, 0, 9, 3};
  std::vector<float> y(ids.size() * D);
  auto op = Op(XQ_OP_GET_ROWS);
  op.src[0] = T(XQ_DTYPE_F32, {V, D}, table.data());
  op.src[1] = T(XQ_DTYPE_I32, {(int64_t)ids.size()}, ids.data());
  op.dst = T(XQ_DTYPE_F32, {(int64_t)ids.size(), D}, y.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < D; ++i) EXPECT_EQ(y[t * D + i], table[ids[t] * D + i]);
  op.src[0] = T(XQ_DTYPE_BF16, {V, D}, tb.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < D; ++i) EXPECT_EQ(y[t * D + i], sdk::bf16_to_f32(tb[ids[t] * D + i]));
  ids[1] = 10;  // out of range: an error, not a crash
  EXPECT_EQ(fx().run(op), XQ_ERR_INVALID_ARGUMENT);
}

TEST(CpuProvider, QuantizeActPerTokenAndStatic) {
  int64_t M = 3, K = 20;
  auto x = rnd(M * K, -5, 5);
  std::vector<int8_t> q(M * K);
  std::vector<float> s(M);
  auto op = Op(XQ_OP_QUANTIZE_ACT);
  op.src[0] = T(XQ_DTYPE_F32, {M, K}, x.data());
  op.src[1] = T(XQ_DTYPE_F32, {M}, s.data());
  op.dst = T(XQ_DTYPE_I8, {M, K}, q.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (int64_t m = 0; m < M; ++m) {
    double amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(double(x[m * K + k])));
    EXPECT_NEAR(s[m], amax / 127.0, 1e-6);
    for (int64_t k = 0; k < K; ++k) EXPECT_EQ(q[m * K + k], (int)std::nearbyint(x[m * K + k] / s[m]));
  }
  op.i[0] = 1;
  op.f[0] = 0.02;  // clips: full int8 range
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (int64_t i = 0; i < M * K; ++i)
    EXPECT_EQ(q[i], (int)std::min(127.0, std::max(-128.0, (double)std::nearbyint(x[i] / 0.02f))));
  EXPECT_FLOAT_EQ(s[0], 0.02f);
}

TEST(CpuProvider, ConvertRoundTrips) {
  auto x = rnd(100, -100, 100);
  std::vector<uint16_t> h(100);
  std::vector<float> back(100);
  auto op = Op(XQ_OP_CONVERT);
  op.src[0] = T(XQ_DTYPE_F32, {10, 10}, x.data());
  op.dst = T(XQ_DTYPE_F16, {10, 10}, h.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  op.src[0] = op.dst;
  op.dst = T(XQ_DTYPE_F32, {100}, back.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(h[i], sdk::f32_to_f16(x[i]));
    EXPECT_EQ(back[i], sdk::round_to_f16(x[i]));
  }
}

// BF16 and F16 weights (a model's 16-bit embedding table or lm_head): the
// very floats of MATMUL on the F32 image of the weights, for the GEMV (M = 1,
// several pool tasks), and the 128-column SGEMM blocks (M = 3, 17; N spans 17
// blocks, the last partial), odd K, with a bias.
TEST(CpuProvider, MatmulWith16BitWeightsEqualsItsF32Image) {
  const int64_t K = 33, N = 2100;
  for (xq_dtype t : {XQ_DTYPE_BF16, XQ_DTYPE_F16}) {
    auto w = rnd(N * K), b = rnd(N);
    std::vector<uint16_t> wb(w.size());
    for (size_t i = 0; i < w.size(); ++i)
      w[i] = t == XQ_DTYPE_F16 ? xquant::sdk::f16_to_f32(wb[i] = xquant::sdk::f32_to_f16(w[i]))
                               : xquant::sdk::bf16_to_f32(wb[i] = xquant::sdk::f32_to_bf16(w[i]));
    for (int64_t M : {1, 3, 17}) {
      auto x = rnd(M * K);
      std::vector<float> y16(M * N, 1.0f), y32(M * N, 2.0f);
      auto op = Op(XQ_OP_MATMUL);
      op.src[0] = T(XQ_DTYPE_F32, {M, K}, x.data());
      op.src[2] = T(XQ_DTYPE_F32, {N}, b.data());
      op.src[1] = T(t, {N, K}, wb.data());
      op.dst = T(XQ_DTYPE_F32, {M, N}, y16.data());
      ASSERT_TRUE(fx().supports(op));
      ASSERT_EQ(fx().run(op), XQ_OK);
      op.src[1] = T(XQ_DTYPE_F32, {N, K}, w.data());
      op.dst = T(XQ_DTYPE_F32, {M, N}, y32.data());
      ASSERT_EQ(fx().run(op), XQ_OK);
      EXPECT_EQ(y16, y32) << xquant::sdk::dtype_name(t) << " M = " << M;
    }
  }
}

TEST(CpuProvider, RejectsWhatItCannotRun) {
  std::vector<float> a(12), b(12), y(12);
  auto op = Op(XQ_OP_MATMUL);
  op.src[0] = T(XQ_DTYPE_F32, {3, 4}, a.data());
  op.src[1] = T(XQ_DTYPE_F32, {3, 5}, b.data());  // K mismatch
  op.dst = T(XQ_DTYPE_F32, {3, 3}, y.data());
  EXPECT_FALSE(fx().supports(op));
  EXPECT_EQ(fx().run(op), XQ_ERR_UNSUPPORTED);
  op.src[1] = T(XQ_DTYPE_I8, {3, 4}, b.data());  // W of no float dtype
  EXPECT_FALSE(fx().supports(op));
  op.src[1] = T(XQ_DTYPE_F32, {3, 4}, b.data());
  EXPECT_TRUE(fx().supports(op));
  op.src[0].strides[0] = 8;  // strided
  op.src[0].strides[1] = 1;
  EXPECT_FALSE(fx().supports(op));
  auto q = Op(XQ_OP_QMATMUL);  // no qweight
  q.src[0] = op.src[1];
  q.dst = op.dst;
  EXPECT_FALSE(fx().supports(q));
}

// ---- quantized weights -------------------------------------------------------

namespace {

struct Canon {
  int64_t rows, cols, gs, ng;
  std::vector<int8_t> codes, zps;
  std::vector<float> scales;
  std::vector<int32_t> gidx;
  xq_quant_tensor t{};
  double w(int64_t r, int64_t c) const {
    int64_t g = t.strategy == XQ_STRATEGY_TENSOR ? 0 : r * ng + (gidx.empty() ? c / gs : gidx[c]);
    double z = zps.empty() ? 0.0 : zps[g];
    return (codes[r * cols + c] - z) * scales[g];
  }
};

Canon make_canon(int64_t rows, int64_t cols, uint32_t bits, xq_strategy gran, int64_t gs, bool sym, bool act_order) {
  Canon c;
  c.rows = rows;
  c.cols = cols;
  c.gs = gran == XQ_STRATEGY_GROUP ? gs : cols;
  c.ng = gran == XQ_STRATEGY_GROUP ? (cols + gs - 1) / gs : 1;
  int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> cd(lo, hi);
  c.codes.resize(rows * cols);
  for (auto& v : c.codes) v = (int8_t)cd(rng);
  size_t ns = gran == XQ_STRATEGY_TENSOR ? 1 : rows * c.ng;
  c.scales = rnd(ns, 0.01f, 0.1f);
  if (!sym) {
    c.zps.resize(ns);
    for (auto& z : c.zps) z = (int8_t)cd(rng);
  }
  if (act_order) {
    c.gidx.resize(cols);
    for (int64_t i = 0; i < cols; ++i) c.gidx[i] = (int32_t)(i / gs);
    std::shuffle(c.gidx.begin(), c.gidx.end(), rng);
  }
  auto& t = c.t;
  t.struct_size = sizeof(t);
  t.bits = bits;
  t.symmetric = sym;
  t.strategy = gran;
  t.rows = rows;
  t.cols = cols;
  t.group_size = c.gs;
  t.n_groups = c.ng;
  t.codes = c.codes.data();
  t.scales = c.scales.data();
  t.zero_points = sym ? nullptr : c.zps.data();
  t.g_idx = act_order ? c.gidx.data() : nullptr;
  t.scale_dtype = XQ_DTYPE_F32;
  return c;
}

struct QW {
  xq_qweight* w = nullptr;
  explicit QW(const xq_quant_tensor& t) {
    EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &t, &w), XQ_OK);
  }
  ~QW() { fx().vt().qweight_release(fx().p->state, w); }
};

double quantize_ref(const float* x, int64_t k, std::vector<int>& q, double st) {
  double s = st;
  double lo = -127;
  if (s <= 0) {
    float amax = 0;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
    s = amax / 127.0f;
  } else {
    lo = -128;
  }
  q.resize(k);
  float inv = 1.0f / (float)s;
  for (int64_t i = 0; i < k; ++i) q[i] = (int)std::min(127.0, std::max(lo, (double)std::nearbyint(x[i] * inv)));
  return s;
}

}  // namespace

TEST(CpuProvider, DequantizeAndQmatmulWeightOnly) {
  struct Case {
    uint32_t bits;
    xq_strategy gran;
    int64_t gs;
    bool sym, act_order;
  };
  // cols 100 with group 32 leaves a ragged last group of 4.
  for (Case cs : {Case{4, XQ_STRATEGY_GROUP, 32, false, false}, Case{4, XQ_STRATEGY_GROUP, 32, true, true},
                  Case{8, XQ_STRATEGY_CHANNEL, 0, true, false}, Case{3, XQ_STRATEGY_TENSOR, 0, false, false},
                  Case{2, XQ_STRATEGY_GROUP, 16, false, true}}) {
    int64_t N = 37, K = 100;
    Canon c = make_canon(N, K, cs.bits, cs.gran, cs.gs, cs.sym, cs.act_order);
    // Float activations in the decode GEMV (INT4 weights default to int8
    // ones, checked against their own reference in test_cpu_qkernels): here
    // QMATMUL must equal the dequantized float product. Read at prepare.
    setenv("XQUANT_CPU_GEMV", "f32", 1);
    QW qw(c.t);
    unsetenv("XQUANT_CPU_GEMV");
    ASSERT_NE(qw.w, nullptr);
    EXPECT_STREQ(fx().vt().qweight_layout(fx().p->state, qw.w), "cpu-int8-group");
    // DEQUANTIZE is exact: the same float expression as the reference.
    std::vector<float> deq(N * K);
    auto op = Op(XQ_OP_DEQUANTIZE);
    op.qweight = qw.w;
    op.dst = T(XQ_DTYPE_F32, {N, K}, deq.data());
    ASSERT_EQ(fx().run(op), XQ_OK);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t k = 0; k < K; ++k)
        ASSERT_EQ(deq[r * K + k], (float)c.w(r, k)) << "bits " << cs.bits << " at " << r << "," << k;
    // QMATMUL on both paths (fused GEMV for M <= 4, tile + SGEMM above).
    for (int64_t M : {1, 3, 9}) {
      auto x = rnd(M * K), b = rnd(N);
      std::vector<float> y(M * N);
      auto mm = Op(XQ_OP_QMATMUL);
      mm.qweight = qw.w;
      mm.src[0] = T(XQ_DTYPE_F32, {M, K}, x.data());
      mm.src[2] = T(XQ_DTYPE_F32, {N}, b.data());
      mm.dst = T(XQ_DTYPE_F32, {M, N}, y.data());
      ASSERT_TRUE(fx().supports(mm));
      ASSERT_EQ(fx().run(mm), XQ_OK);
      std::vector<double> ref(M * N);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double s = b[n];
          for (int64_t k = 0; k < K; ++k) s += x[m * K + k] * c.w(n, k);
          ref[m * N + n] = s;
        }
      expect_close(y, ref, 1e-4, "qmatmul weight-only");
    }
  }
}

TEST(CpuProvider, QmatmulW8A8QuantizesActivations) {
  for (xq_act_scheme act : {XQ_ACT_DYNAMIC_TOKEN, XQ_ACT_STATIC_TENSOR}) {
    int64_t N = 21, K = 64, M = 5;
    Canon c = make_canon(N, K, 8, XQ_STRATEGY_CHANNEL, 0, true, false);
    c.t.act_scheme = act;
    c.t.act_bits = 8;
    c.t.input_scale = 0.006f;
    QW qw(c.t);
    auto x = rnd(M * K);
    std::vector<float> y(M * N);
    auto mm = Op(XQ_OP_QMATMUL);
    mm.qweight = qw.w;
    mm.src[0] = T(XQ_DTYPE_F32, {M, K}, x.data());
    mm.dst = T(XQ_DTYPE_F32, {M, N}, y.data());
    ASSERT_EQ(fx().run(mm), XQ_OK);
    std::vector<double> ref(M * N), unq(M * N);
    for (int64_t m = 0; m < M; ++m) {
      std::vector<int> q;
      double s = quantize_ref(&x[m * K], K, q, act == XQ_ACT_STATIC_TENSOR ? 0.006 : 0.0);
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0, a2 = 0;
        for (int64_t k = 0; k < K; ++k) acc += q[k] * s * c.w(n, k), a2 += x[m * K + k] * c.w(n, k);
        ref[m * N + n] = acc;
        unq[m * N + n] = a2;
      }
    }
    expect_close(y, ref, 1e-5, "w8a8");
    // And the activation quantization really happened (differs from float).
    double diff = 0;
    for (size_t i = 0; i < y.size(); ++i) diff = std::max(diff, std::fabs(y[i] - unq[i]));
    EXPECT_GT(diff, 1e-6);
  }
}

TEST(CpuProvider, PrepareRejectsBadTensors) {
  Canon c = make_canon(4, 40, 4, XQ_STRATEGY_GROUP, 16, false, false);
  xq_qweight* w = nullptr;
  c.codes[5] = 9;  // outside the 4-bit range
  EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &c.t, &w), XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(w, nullptr);
  c.codes[5] = 1;
  c.t.n_groups = 2;  // ceil(40/16) = 3
  EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &c.t, &w), XQ_ERR_UNSUPPORTED);
  c.t.n_groups = 3;
  c.t.bits = 9;
  EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &c.t, &w), XQ_ERR_UNSUPPORTED);
}
