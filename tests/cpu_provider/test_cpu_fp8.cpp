// test_cpu_fp8.cpp: the `cpu` provider's FP8 E4M3 weights (fp8_qweight.cpp)
// through the real plugin, on fresh random inputs, against a double-precision
// reference written here: DEQUANTIZE = e4m3 value * scale exactly; weight-only
// QMATMUL = x . dequantized W; FP8 W8A8 dynamic QMATMUL = vLLM's semantics,
// (q_x s_x)(q_w s_w) with q_x the nearest E4M3 code of x * (1 / s_x),
// s_x = max|x_row| / 448 (found here by searching all codes, not with the SDK
// encoder), so the provider may differ only by its fp32 summation order.
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/tensor.hpp>

#include "cpu_provider_fixture.hpp"
#include "e4m3_reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

using namespace xquant;

namespace {

struct Fp8Weight {
  std::vector<int8_t> codes;
  std::vector<float> scales;
  xq_quant_tensor t = sdk::make_struct<xq_quant_tensor>();
  Fp8Weight(int64_t N, int64_t K, xq_strategy st, bool dynamic, std::mt19937& rng) {
    codes.resize(static_cast<size_t>(N * K));
    for (auto& c : codes) {
      uint8_t b = static_cast<uint8_t>(rng() & 0xFF);
      if ((b & 0x7F) == 0x7F) b = 0x7E;
      c = static_cast<int8_t>(b);
    }
    std::uniform_real_distribution<float> s(1e-4f, 1e-2f);
    scales.resize(st == XQ_STRATEGY_TENSOR ? 1 : static_cast<size_t>(N));
    for (auto& v : scales) v = s(rng);
    t.bits = XQ_BITS_F8_E4M3;
    t.symmetric = 1;
    t.strategy = st;
    t.rows = N;
    t.cols = K;
    t.group_size = K;
    t.n_groups = 1;
    t.codes = codes.data();
    t.scales = scales.data();
    t.scale_dtype = XQ_DTYPE_F32;
    t.act_scheme = dynamic ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_NONE;
    t.act_bits = dynamic ? XQ_BITS_F8_E4M3 : 0;
  }
  double w(int64_t n, int64_t k) const {
    return test::e4m3_value(static_cast<uint8_t>(codes[n * t.cols + k])) * scales[t.strategy == XQ_STRATEGY_TENSOR ? 0 : n];
  }
};

struct Prepared {
  xq_qweight* w = nullptr;
  explicit Prepared(const xq_quant_tensor& q) {
    EXPECT_EQ(test::cpu_provider().vt().qweight_prepare(test::cpu_provider().p->state, &q, &w), XQ_OK);
  }
  ~Prepared() { test::cpu_provider().vt().qweight_release(test::cpu_provider().p->state, w); }
};

}  // namespace

TEST(CpuFp8, DequantizeIsExactAndQmatmulMatchesTheReference) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t N = 29, K = 96;
  for (xq_strategy st : {XQ_STRATEGY_CHANNEL, XQ_STRATEGY_TENSOR})
    for (bool dynamic : {false, true}) {
      SCOPED_TRACE(std::string(st == XQ_STRATEGY_TENSOR ? "tensor" : "channel") + (dynamic ? " W8A8" : " weight-only"));
      Fp8Weight fw(N, K, st, dynamic, rng);
      Prepared p(fw.t);
      ASSERT_NE(p.w, nullptr);
      EXPECT_STREQ(test::cpu_provider().vt().qweight_layout(test::cpu_provider().p->state, p.w), "cpu-fp8-f32");
      std::vector<float> deq(static_cast<size_t>(N * K));
      auto op = sdk::make_op(XQ_OP_DEQUANTIZE);
      op.qweight = p.w;
      op.dst = sdk::device_tensor(XQ_DTYPE_F32, {N, K}, deq.data());
      ASSERT_EQ(test::cpu_provider().vt().run_op(test::cpu_provider().p->state, &op), XQ_OK);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)  // the exact product rounded once to float, as e4m3 * scale in float
          ASSERT_EQ(deq[size_t(n * K + k)], static_cast<float>(fw.w(n, k)));

      for (int64_t M : {1, 6}) {
        std::vector<float> x(static_cast<size_t>(M * K)), b(static_cast<size_t>(N)), y(static_cast<size_t>(M * N));
        for (auto& v : x) v = nd(rng);
        for (auto& v : b) v = nd(rng);
        if (M > 1)
          for (int64_t k = 0; k < K; ++k) x[size_t(K + k)] = 0.0f;  // an all-zero token
        auto mm = sdk::make_op(XQ_OP_QMATMUL);
        mm.qweight = p.w;
        mm.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {M, K}, x.data());
        mm.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {N}, b.data());
        mm.dst = sdk::device_tensor(XQ_DTYPE_F32, {M, N}, y.data());
        ASSERT_NE(test::cpu_provider().vt().supports_op(test::cpu_provider().p->state, &mm), 0);
        ASSERT_EQ(test::cpu_provider().vt().run_op(test::cpu_provider().p->state, &mm), XQ_OK);
        for (int64_t m = 0; m < M; ++m) {
          float amax = 0.0f;
          for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[size_t(m * K + k)]));
          const float sx = amax > 0.0f ? amax / 448.0f : 1.0f;
          const float inv = 1.0f / sx;
          for (int64_t n = 0; n < N; ++n) {
            double acc = 0, scale = 0;
            for (int64_t k = 0; k < K; ++k) {
              const double a = dynamic ? test::nearest_e4m3(x[size_t(m * K + k)] * inv) : x[size_t(m * K + k)];
              acc += a * test::e4m3_value(static_cast<uint8_t>(fw.codes[size_t(n * K + k)]));
              scale += std::fabs(a * test::e4m3_value(static_cast<uint8_t>(fw.codes[size_t(n * K + k)])));
            }
            const double sw = fw.scales[st == XQ_STRATEGY_TENSOR ? 0 : n];
            const double want = (dynamic ? sx : 1.0) * sw * acc + b[size_t(n)];
            // fp32 summation of exact products: error within K ulps of the sum of |terms|.
            const double tol = (dynamic ? sx : 1.0) * sw * scale * K * 1.2e-7 + 1e-6 * std::fabs(want);
            ASSERT_NEAR(y[size_t(m * N + n)], want, tol) << "m " << m << " n " << n;
          }
        }
      }
    }
}

TEST(CpuFp8, RefusesWhatItCannotRun) {
  std::mt19937 rng(3);
  Fp8Weight fw(16, 32, XQ_STRATEGY_CHANNEL, true, rng);
  fw.t.act_bits = 8;  // int8 activations with FP8 weights
  xq_qweight* w = nullptr;
  EXPECT_EQ(test::cpu_provider().vt().qweight_prepare(test::cpu_provider().p->state, &fw.t, &w), XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(w, nullptr);
  fw.t.act_bits = XQ_BITS_F8_E4M3;
  fw.codes[5] = 0x7F;  // NaN
  EXPECT_EQ(test::cpu_provider().vt().qweight_prepare(test::cpu_provider().p->state, &fw.t, &w), XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(w, nullptr);
}
