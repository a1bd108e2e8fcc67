// test_w8a8.cpp: INT8/FP8 W8A8 through the plugin ABI: activation
// quantization (dynamic per-token and static; INT8 and FP8 E4M3) against a
// bit-exact CPU reference, W8A8 QMATMUL ("cuda-w8a8-int8-nk", per-channel and
// per-tensor weight scales, dynamic and static activations, bias), INT8/FP8
// MATMUL with per-tensor and vector scales, BF16 MATMUL, and DEQUANTIZE.
//
// Bounds: quantized codes match exactly (the GPU and the reference do the
// same f32 operations, RNE), scales to 1e-6 relative; GEMMs with BF16 output
// ||out-ref||/||ref|| <= 1e-2, F16 <= 3e-3, F32 <= 1e-4 (INT32 accumulation is
// exact; FP8 accumulates in f32).
#include <cstdlib>

#include "test_host.hpp"

using namespace xqtest;

namespace {

// ---- FP8 E4M3 reference (finite-saturating, round to nearest even) --------
float e4m3_decode(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 0xF, m = b & 7;
  float v;
  if (e == 0) v = std::ldexp(static_cast<float>(m) / 8.f, -6);
  else if (e == 15 && m == 7) v = NAN;
  else v = std::ldexp(1.f + static_cast<float>(m) / 8.f, e - 7);
  return s ? -v : v;
}
uint8_t e4m3_encode(float v) {
  const uint8_t sign = v < 0 ? 0x80 : 0;
  const float a = std::fabs(v);
  if (a >= 448.f) return sign | 0x7E;
  uint8_t best = 0;
  float best_d = INFINITY;
  for (uint8_t c = 0; c <= 0x7E; ++c) {
    const float d = std::fabs(e4m3_decode(c) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best_d = d;
      best = c;
    }
  }
  return sign | best;
}

std::vector<float> load_float_input(xq_dtype t, const std::vector<float>& x, std::vector<uint8_t>* bytes) {
  std::vector<float> r(x.size());
  if (t == XQ_DTYPE_F32) {
    bytes->resize(x.size() * 4);
    std::memcpy(bytes->data(), x.data(), bytes->size());
    return x;
  }
  auto bits = to_half_bits(x, t, &r);
  bytes->resize(bits.size() * 2);
  std::memcpy(bytes->data(), bits.data(), bytes->size());
  return r;
}

// Per-token dynamic (static_scale <= 0) or static quantization, as the kernel.
void ref_quant(const std::vector<float>& x, int64_t M, int64_t K, bool fp8, float static_scale,
               std::vector<int8_t>* q8, std::vector<uint8_t>* qf8, std::vector<float>* scales) {
  q8->resize(M * K);
  qf8->resize(M * K);
  scales->resize(M);
  for (int64_t m = 0; m < M; ++m) {
    float scale = static_scale;
    if (static_scale <= 0.f) {
      float amax = 0.f;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[m * K + k]));
      scale = amax / (fp8 ? 448.f : 127.f);
      if (!(scale > 0.f)) scale = 1.f;
    }
    (*scales)[m] = scale;
    const float inv = 1.0f / scale;
    for (int64_t k = 0; k < K; ++k) {
      const float v = x[m * K + k] * inv;
      (*q8)[m * K + k] = static_cast<int8_t>(std::min(127.f, std::max(-128.f, std::nearbyint(v))));
      (*qf8)[m * K + k] = e4m3_encode(v);
    }
  }
}

double bound_for(xq_dtype y) { return y == XQ_DTYPE_BF16 ? 1e-2 : y == XQ_DTYPE_F16 ? 3e-3 : 1e-4; }

std::vector<float> read_out(DevBuf& d, xq_dtype t, size_t n) {
  std::vector<float> y(n);
  if (t == XQ_DTYPE_F32) return d.get<float>(n);
  auto bits = d.get<uint16_t>(n);
  for (size_t i = 0; i < n; ++i) y[i] = half_bits_to_f32(bits[i], t);
  return y;
}

TEST(QuantizeAct, MatchesReferenceBitExact) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  // Both 16-bit kernels: the one-read kernel (default) and the two-pass one
  // (XQUANT_CUDA_ACT_QUANT_ONE_READ=0, read per call).
  for (const char* one_read : {"1", "0"})
  for (xq_dtype in : {XQ_DTYPE_BF16, XQ_DTYPE_F16, XQ_DTYPE_F32})
    for (xq_dtype out : {XQ_DTYPE_I8, XQ_DTYPE_F8_E4M3})
      for (bool dynamic : {true, false})
        // K = 2056 and 16384: the one-read kernel with 2 and 8 chunks a thread
        // (the first partly past the row); 16392: longer than it keeps in
        // registers, so the two-pass kernel.
        for (auto [M, K] : {std::pair<int64_t, int64_t>{1, 64}, {3, 1000}, {17, 4096}, {255, 200}, {5, 2056},
                            {2, 16384}, {3, 16392}}) {
          std::vector<float> x(M * K);
          for (auto& v : x) v = uniform(-3.f, 3.f);
          std::vector<uint8_t> xb;
          auto xr = load_float_input(in, x, &xb);
          const float static_scale = dynamic ? 0.f : 0.021f;
          std::vector<int8_t> q8;
          std::vector<uint8_t> qf8;
          std::vector<float> sref;
          ref_quant(xr, M, K, out == XQ_DTYPE_F8_E4M3, static_scale, &q8, &qf8, &sref);
          DevBuf dx(xb.size()), dq(M * K), ds(M * 4);
          dx.put(xb);
          dq.poison();
          ds.poison();
          xq_op op = make_op(XQ_OP_QUANTIZE_ACT);
          op.src[0] = tensor2(in, M, K, dx.p);
          op.dst = tensor2(out, M, K, dq.p);
          if (dynamic) {
            op.src[1] = tensor1(XQ_DTYPE_F32, M, ds.p);
          } else {
            op.i[0] = 1;
            op.f[0] = static_scale;
          }
          ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
          setenv("XQUANT_CUDA_ACT_QUANT_ONE_READ", one_read, 1);
          const xq_status st = P.vt->run_op(P.state, &op);
          unsetenv("XQUANT_CUDA_ACT_QUANT_ONE_READ");
          XQ_OK_OR_FAIL(st);
          auto got = dq.get<uint8_t>(M * K);
          size_t bad = 0;
          for (int64_t i = 0; i < M * K; ++i) {
            const uint8_t want = out == XQ_DTYPE_I8 ? static_cast<uint8_t>(q8[i]) : qf8[i];
            bad += got[i] != want;
          }
          EXPECT_EQ(bad, 0u) << "in=" << in << " out=" << out << " dyn=" << dynamic << " M=" << M << " K=" << K
                             << " one_read=" << one_read;
          if (dynamic) {
            auto s = ds.get<float>(M);
            for (int64_t m = 0; m < M; ++m) EXPECT_NEAR(s[m], sref[m], 1e-6 * sref[m]) << "scale row " << m;
          }
        }
}

struct W8Case {
  xq_act_scheme act;
  bool per_tensor;
  xq_dtype in, out;
  int64_t K, N;
};

class W8A8 : public testing::TestWithParam<W8Case> {};

TEST_P(W8A8, QMatmulAndDequantize) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const W8Case c = GetParam();
  const int64_t N = c.N, K = c.K;
  std::vector<int8_t> codes(N * K);
  for (auto& v : codes) v = static_cast<int8_t>(uniform_int(-127, 127));
  std::vector<float> scales(c.per_tensor ? 1 : N);
  for (auto& s : scales) s = uniform(0.001f, 0.01f);
  const float input_scale = 0.025f;
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = 8;
  q.symmetric = 1;
  q.strategy = c.per_tensor ? XQ_STRATEGY_TENSOR : XQ_STRATEGY_CHANNEL;
  q.rows = N;
  q.cols = K;
  q.group_size = K;
  q.n_groups = 1;
  q.codes = codes.data();
  q.scales = scales.data();
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = c.act;
  q.act_bits = 8;
  q.input_scale = input_scale;
  xq_qweight* qw = nullptr;
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &q, &qw));
  EXPECT_STREQ(P.vt->qweight_layout(P.state, qw), "cuda-w8a8-int8-nk");
  auto sw = [&](int64_t n) { return scales[c.per_tensor ? 0 : n]; };

  {  // DEQUANTIZE to F32 is exact.
    DevBuf d(N * K * 4);
    d.poison();
    xq_op op = make_op(XQ_OP_DEQUANTIZE);
    op.qweight = qw;
    op.dst = tensor2(XQ_DTYPE_F32, N, K, d.p);
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    auto got = d.get<float>(N * K);
    size_t bad = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) bad += got[n * K + k] != static_cast<float>(codes[n * K + k]) * sw(n);
    EXPECT_EQ(bad, 0u);
  }

  for (int64_t M : {1, 3, 17, 64, 255}) {
    std::vector<float> x(M * K);
    for (auto& v : x) v = uniform(-2.f, 2.f);
    std::vector<uint8_t> xb;
    auto xr = load_float_input(c.in, x, &xb);
    std::vector<int8_t> q8;
    std::vector<uint8_t> qf8;
    std::vector<float> sa;
    ref_quant(xr, M, K, false, c.act == XQ_ACT_STATIC_TENSOR ? input_scale : 0.f, &q8, &qf8, &sa);
    std::vector<float> bias(N);
    for (auto& b : bias) b = uniform(-0.5f, 0.5f);
    std::vector<double> ref(M * N);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        int64_t acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += static_cast<int64_t>(q8[m * K + k]) * codes[n * K + k];
        ref[m * N + n] = static_cast<double>(acc) * sa[m] * sw(n) + bias[n];
      }
    const size_t osz = c.out == XQ_DTYPE_F32 ? 4 : 2;
    DevBuf dx(xb.size()), dy(M * N * osz), db(N * 4);
    dx.put(xb);
    db.put(bias);
    dy.poison();
    xq_op op = make_op(XQ_OP_QMATMUL);
    op.qweight = qw;
    op.src[0] = tensor2(c.in, M, K, dx.p);
    op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
    op.dst = tensor2(c.out, M, N, dy.p);
    ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    auto y = read_out(dy, c.out, M * N);
    EXPECT_EQ(count_nan(y), 0u) << "M=" << M;
    EXPECT_LE(rel_error(y, ref), bound_for(c.out)) << "M=" << M;
  }
  P.vt->qweight_release(P.state, qw);
}

std::vector<W8Case> w8_cases() {
  std::vector<W8Case> v;
  for (xq_act_scheme a : {XQ_ACT_DYNAMIC_TOKEN, XQ_ACT_STATIC_TENSOR})
    for (bool pt : {false, true})
      for (auto [K, N] : {std::pair<int64_t, int64_t>{512, 256}, {1008, 80}, {4096, 384}}) {
        v.push_back({a, pt, XQ_DTYPE_BF16, XQ_DTYPE_BF16, K, N});
        v.push_back({a, pt, XQ_DTYPE_F16, XQ_DTYPE_F32, K, N});
      }
  return v;
}
std::string w8_name(const testing::TestParamInfo<W8Case>& i) {
  const W8Case& c = i.param;
  return std::string(c.act == XQ_ACT_DYNAMIC_TOKEN ? "dyn" : "static") + (c.per_tensor ? "_tensor" : "_channel") +
         (c.in == XQ_DTYPE_BF16 ? "_bf16" : "_f16") + (c.out == XQ_DTYPE_F32 ? "_f32out" : "") + "_K" +
         std::to_string(c.K) + "_N" + std::to_string(c.N);
}
INSTANTIATE_TEST_SUITE_P(Cuda, W8A8, testing::ValuesIn(w8_cases()), w8_name);

// INT8 / FP8 / BF16 MATMUL with explicit operands.
TEST(Matmul, Int8Fp8Bf16AgainstReference) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  for (xq_dtype t : {XQ_DTYPE_I8, XQ_DTYPE_F8_E4M3, XQ_DTYPE_BF16})
    for (int vec : {0, 1})
      for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 256, 128}, {17, 1024, 272}, {255, 4096, 384}}) {
        if (t == XQ_DTYPE_BF16 && vec) continue;
        std::vector<float> xa(M * K), wa(N * K), sx(M), swv(N), bias(N);
        std::vector<uint8_t> xbytes, wbytes;
        const size_t esz = t == XQ_DTYPE_BF16 ? 2 : 1;
        xbytes.resize(M * K * esz);
        wbytes.resize(N * K * esz);
        auto fill = [&](std::vector<float>& vals, std::vector<uint8_t>& bytes) {
          for (size_t i = 0; i < vals.size(); ++i) {
            if (t == XQ_DTYPE_I8) {
              const int8_t c = static_cast<int8_t>(uniform_int(-127, 127));
              bytes[i] = static_cast<uint8_t>(c);
              vals[i] = c;
            } else if (t == XQ_DTYPE_F8_E4M3) {
              const uint8_t c = e4m3_encode(uniform(-400.f, 400.f));
              bytes[i] = c;
              vals[i] = e4m3_decode(c);
            } else {
              const uint16_t b = xquant::sdk::f32_to_bf16(uniform(-1.f, 1.f));
              std::memcpy(&bytes[2 * i], &b, 2);
              vals[i] = xquant::sdk::bf16_to_f32(b);
            }
          }
        };
        fill(xa, xbytes);
        fill(wa, wbytes);
        for (auto& s : sx) s = uniform(1e-3f, 2e-3f);
        for (auto& s : swv) s = uniform(1e-3f, 2e-3f);
        for (auto& b : bias) b = uniform(-0.5f, 0.5f);
        const float ftx = 1.5e-3f, ftw = 1.25e-3f;
        std::vector<double> ref = ref_matmul(xa, wa, M, N, K, nullptr);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double s = 1.0;
            if (t != XQ_DTYPE_BF16) s = vec ? static_cast<double>(sx[m]) * swv[n] : static_cast<double>(ftx) * ftw;
            ref[m * N + n] = ref[m * N + n] * s + bias[n];
          }
        std::vector<float> scales(sx);
        scales.insert(scales.end(), swv.begin(), swv.end());
        DevBuf dx(xbytes.size()), dw(wbytes.size()), dy(M * N * 2), db(N * 4), ds(scales.size() * 4);
        dx.put(xbytes);
        dw.put(wbytes);
        db.put(bias);
        ds.put(scales);
        dy.poison();
        xq_op op = make_op(XQ_OP_MATMUL);
        op.src[0] = tensor2(t, M, K, dx.p);
        op.src[1] = tensor2(t, N, K, dw.p);
        op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
        op.dst = tensor2(XQ_DTYPE_BF16, M, N, dy.p);
        if (vec) {
          op.i[0] = 1;
          op.src[3] = tensor1(XQ_DTYPE_F32, M + N, ds.p);
        } else {
          op.f[0] = ftx;
          op.f[1] = ftw;
        }
        ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
        XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op)) ;
        auto y = read_out(dy, XQ_DTYPE_BF16, M * N);
        EXPECT_EQ(count_nan(y), 0u);
        EXPECT_LE(rel_error(y, ref), 1e-2) << "dtype=" << t << " vec=" << vec << " M=" << M << " K=" << K << " N=" << N;
      }
}

TEST(W8A8Errors, ShapesTheGemmCannotTake) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  std::vector<int8_t> codes(64 * 100, 1);
  std::vector<float> scales(64, 0.01f);
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = 8;
  q.symmetric = 1;
  q.strategy = XQ_STRATEGY_CHANNEL;
  q.rows = 64;
  q.cols = 100;
  q.group_size = 100;
  q.n_groups = 1;
  q.codes = codes.data();
  q.scales = scales.data();
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
  q.act_bits = 8;
  xq_qweight* w = nullptr;
  EXPECT_EQ(P.vt->qweight_prepare(P.state, &q, &w), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("multiples of 16"), std::string::npos) << g_last_error;
}

}  // namespace
