// test_w4a16.cpp: W4A16 through the plugin ABI: canonical int4 weights
// (group 16/32/64/128 and per-channel, symmetric and asymmetric, act-order)
// are prepared into "cuda-w4a16-mma", then QMATMUL (fused kernel and
// dequant+cuBLASLt path, both forced and by default dispatch) and
// DEQUANTIZE are compared with a double-precision CPU reference on fresh
// random data, poisoned outputs, odd M and K/N that are not multiples of 64.
//
// Bounds (||out-ref||/||ref||): the kernel rounds scales to the activation
// type and each dequantized weight once, accumulates in f32 and rounds the
// output: BF16 <= 1e-2, F16 <= 3e-3. DEQUANTIZE per element: BF16 2^-7,
// F16 2^-9 relative (plus a tiny absolute floor).
#include "test_host.hpp"

using namespace xqtest;

namespace {

struct W4Case {
  xq_dtype dtype;
  int group;  // 0 = per-channel
  bool asym;
  bool act_order;
  int64_t K, N;
};

std::string case_name(const testing::TestParamInfo<W4Case>& i) {
  const W4Case& c = i.param;
  return std::string(c.dtype == XQ_DTYPE_BF16 ? "bf16" : "f16") + "_g" + std::to_string(c.group) +
         (c.asym ? "_asym" : "_sym") + (c.act_order ? "_actorder" : "") + "_K" + std::to_string(c.K) + "_N" +
         std::to_string(c.N);
}

struct Canonical {
  std::vector<int8_t> codes, zp;
  std::vector<float> scales;
  std::vector<int32_t> g_idx;
  xq_quant_tensor q{};
  std::vector<float> dense;  // reference dequantized weight [N][K]
};

Canonical make_w4(const W4Case& c) {
  Canonical w;
  const int64_t N = c.N, K = c.K;
  const int64_t gs = c.group ? c.group : K;
  const int64_t G = (K + gs - 1) / gs;
  w.codes.resize(N * K);
  for (auto& v : w.codes) v = static_cast<int8_t>(uniform_int(-8, 7));
  w.scales.resize(N * G);
  for (auto& s : w.scales) s = uniform(0.002f, 0.02f);
  if (c.asym) {
    w.zp.resize(N * G);
    for (auto& z : w.zp) z = static_cast<int8_t>(uniform_int(-8, 7));
  }
  std::vector<int64_t> group_of(K);
  for (int64_t k = 0; k < K; ++k) group_of[k] = k / gs;
  if (c.act_order) {
    std::vector<int32_t> p(K);
    for (int64_t k = 0; k < K; ++k) p[k] = static_cast<int32_t>(k);
    std::shuffle(p.begin(), p.end(), rng());
    w.g_idx.resize(K);
    for (int64_t i = 0; i < K; ++i) w.g_idx[p[i]] = static_cast<int32_t>(i / gs);  // GPTQ desc_act
    for (int64_t k = 0; k < K; ++k) group_of[k] = w.g_idx[k];
  }
  w.dense.resize(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = group_of[k];
      const int z = c.asym ? w.zp[n * G + g] : 0;
      w.dense[n * K + k] = static_cast<float>(w.codes[n * K + k] - z) * w.scales[n * G + g];
    }
  xq_quant_tensor& q = w.q;
  q.struct_size = sizeof(q);
  q.bits = 4;
  q.symmetric = c.asym ? 0 : 1;
  q.strategy = c.group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = N;
  q.cols = K;
  q.group_size = gs;
  q.n_groups = G;
  q.codes = w.codes.data();
  q.scales = w.scales.data();
  q.zero_points = c.asym ? w.zp.data() : nullptr;
  q.g_idx = c.act_order ? w.g_idx.data() : nullptr;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_NONE;
  return w;
}

class W4A16 : public testing::TestWithParam<W4Case> {};

TEST_P(W4A16, QMatmulAndDequantize) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const W4Case c = GetParam();
  const int64_t N = c.N, K = c.K;
  Canonical w = make_w4(c);
  xq_qweight* qw = nullptr;
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &w.q, &qw));
  EXPECT_STREQ(P.vt->qweight_layout(P.state, qw), "cuda-w4a16-mma");
  const double bound = c.dtype == XQ_DTYPE_BF16 ? 1e-2 : 3e-3;

  // DEQUANTIZE to F32 and to the activation type.
  for (xq_dtype dt : {XQ_DTYPE_F32, c.dtype}) {
    const size_t esz = dt == XQ_DTYPE_F32 ? 4 : 2;
    DevBuf d(N * K * esz);
    d.poison();
    xq_op op = make_op(XQ_OP_DEQUANTIZE);
    op.qweight = qw;
    op.dst = tensor2(dt, N, K, d.p);
    ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    std::vector<float> got(N * K);
    if (dt == XQ_DTYPE_F32) {
      got = d.get<float>(N * K);
    } else {
      auto bits = d.get<uint16_t>(N * K);
      for (size_t i = 0; i < bits.size(); ++i) got[i] = half_bits_to_f32(bits[i], dt);
    }
    const double tol = (c.dtype == XQ_DTYPE_BF16 ? 1.0 / 128 : 1.0 / 512) * (dt == XQ_DTYPE_F32 ? 0.5 : 1.0);
    size_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (!(std::fabs(got[i] - w.dense[i]) <= tol * std::fabs(w.dense[i]) + 1e-7)) ++bad;
    EXPECT_EQ(bad, 0u) << "DEQUANTIZE to dtype " << dt << ": " << bad << " of " << got.size() << " elements off";
  }

  // QMATMUL over odd M, default dispatch plus both forced paths.
  struct Run {
    int64_t M;
    int64_t force;
    bool bias;
  };
  const Run runs[] = {{1, 0, false}, {3, 0, true}, {17, 0, false}, {64, 0, true}, {255, 0, false},
                      {255, 1, true}, {3, 2, false}, {40, 2, true}};
  for (const Run& r : runs) {
    const int64_t M = r.M;
    std::vector<float> x(M * K), xr;
    for (auto& v : x) v = uniform(-1.f, 1.f);
    auto xbits = to_half_bits(x, c.dtype, &xr);
    std::vector<float> bias(N);
    for (auto& b : bias) b = uniform(-0.5f, 0.5f);
    DevBuf dx(M * K * 2), dy(M * N * 2), db(N * 4);
    dx.put(xbits);
    db.put(bias);
    dy.poison();
    xq_op op = make_op(XQ_OP_QMATMUL);
    op.qweight = qw;
    op.src[0] = tensor2(c.dtype, M, K, dx.p);
    if (r.bias) op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
    op.dst = tensor2(c.dtype, M, N, dy.p);
    op.i[7] = r.force;
    ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    auto ybits = dy.get<uint16_t>(M * N);
    std::vector<float> y(M * N);
    for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], c.dtype);
    auto ref = ref_matmul(xr, w.dense, M, N, K, r.bias ? &bias : nullptr);
    EXPECT_EQ(count_nan(y), 0u) << "M=" << M << " force=" << r.force << ": unwritten (poisoned) outputs";
    const double err = rel_error(y, ref);
    EXPECT_LE(err, bound) << "M=" << M << " force=" << r.force;
    RecordProperty("rel_err_M" + std::to_string(M) + "_f" + std::to_string(r.force), std::to_string(err));
  }
  P.vt->qweight_release(P.state, qw);
}

std::vector<W4Case> all_cases() {
  std::vector<W4Case> v;
  const std::pair<int64_t, int64_t> shapes[] = {{512, 256}, {1000, 77}, {4096, 384}};
  for (xq_dtype dt : {XQ_DTYPE_BF16, XQ_DTYPE_F16})
    for (int g : {16, 32, 64, 128, 0})  // 16: four scale words per chunk; at K = 1000 padding
                                        // columns fall past the last group (the fused kernel clamps)
      for (bool asym : {false, true})
        for (auto [K, N] : shapes) {
          v.push_back({dt, g, asym, false, K, N});
          if (g == 128 || (g == 32 && asym)) v.push_back({dt, g, asym, true, K, N});
        }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cuda, W4A16, testing::ValuesIn(all_cases()), case_name);

TEST(W4A16Errors, UnsupportedSchemesSayWhy) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  W4Case c{XQ_DTYPE_BF16, 128, false, false, 256, 64};
  Canonical w = make_w4(c);
  xq_qweight* qw = nullptr;
  w.q.group_size = 100;  // not a power of two
  w.q.n_groups = 3;
  EXPECT_EQ(P.vt->qweight_prepare(P.state, &w.q, &qw), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("group size"), std::string::npos) << g_last_error;
  Canonical w8 = make_w4(c);
  w8.q.bits = 8;
  EXPECT_EQ(P.vt->qweight_prepare(P.state, &w8.q, &qw), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("8-bit"), std::string::npos) << g_last_error;
  // F32 activations are refused by supports_op and run_op alike.
  Canonical ok = make_w4(c);
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &ok.q, &qw));
  DevBuf dx(4 * 256 * 4), dy(4 * 64 * 4);
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = qw;
  op.src[0] = tensor2(XQ_DTYPE_F32, 4, 256, dx.p);
  op.dst = tensor2(XQ_DTYPE_F32, 4, 64, dy.p);
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 0u);
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("BF16 or F16"), std::string::npos) << g_last_error;
  P.vt->qweight_release(P.state, qw);
}

}  // namespace
