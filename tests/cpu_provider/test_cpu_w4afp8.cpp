// test_cpu_w4afp8.cpp: the `cpu` provider's W4AFP8 QMATMUL (int4 symmetric
// group weights, act_scheme XQ_ACT_DYNAMIC_TOKEN with act_bits
// XQ_BITS_F8_E4M3; plugins/cpu/src/w4afp8_activations.cpp) through the real
// plugin, on fresh random inputs. Each activation row must be rounded to E4M3
// with s = max|x| / 448 (the nearest code found here by searching all codes,
// not with the SDK encoder) and the INT4 kernel run on q * s: so the result is
// bit-identical to the weight-only QMATMUL of the same weight on the rounded
// rows, close to a double reference, and not the weight-only result on x.
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/tensor.hpp>

#include "cpu_provider_fixture.hpp"
#include "e4m3_reference.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cpu_w4afp8 {

namespace {

// Row m of x rounded as vLLM's dynamic per-token FP8 quantization does, dequantized.
std::vector<float> rounded_rows(const std::vector<float>& x, int64_t M, int64_t K) {
  std::vector<float> out(x.size());
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[size_t(m * K + k)]));
    const float sx = amax > 0.0f ? amax / 448.0f : 1.0f;
    const float inv = 1.0f / sx;
    for (int64_t k = 0; k < K; ++k)
      out[size_t(m * K + k)] = static_cast<float>(test::nearest_e4m3(x[size_t(m * K + k)] * inv)) * sx;
  }
  return out;
}

struct Int4Weight {
  std::vector<int8_t> codes;
  std::vector<float> scales;
  xq_quant_tensor t = sdk::make_struct<xq_quant_tensor>();
  Int4Weight(int64_t N, int64_t K, int64_t group, bool fp8_acts, std::mt19937& rng) {
    codes.resize(static_cast<size_t>(N * K));
    std::uniform_int_distribution<int> code(-8, 7);
    for (auto& c : codes) c = static_cast<int8_t>(code(rng));
    const int64_t groups = (K + group - 1) / group;
    std::uniform_real_distribution<float> s(1e-3f, 5e-2f);
    scales.resize(static_cast<size_t>(N * groups));
    for (auto& v : scales) v = s(rng);
    t.bits = 4;
    t.symmetric = 1;
    t.strategy = XQ_STRATEGY_GROUP;
    t.rows = N;
    t.cols = K;
    t.group_size = group;
    t.n_groups = groups;
    t.codes = codes.data();
    t.scales = scales.data();
    t.scale_dtype = XQ_DTYPE_F32;
    t.act_scheme = fp8_acts ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_NONE;
    t.act_bits = fp8_acts ? XQ_BITS_F8_E4M3 : 0;
  }
  double w(int64_t n, int64_t k) const {
    return codes[size_t(n * t.cols + k)] * double(scales[size_t(n * t.n_groups + k / t.group_size)]);
  }
};

struct Prepared {
  xq_qweight* w = nullptr;
  explicit Prepared(const xq_quant_tensor& q) { EXPECT_EQ(test::cpu_provider().vt().qweight_prepare(test::cpu_provider().p->state, &q, &w), XQ_OK); }
  ~Prepared() { test::cpu_provider().vt().qweight_release(test::cpu_provider().p->state, w); }
};

std::vector<float> qmatmul(xq_qweight* w, const std::vector<float>& x, const std::vector<float>& bias, int64_t M,
                           int64_t N, int64_t K) {
  std::vector<float> y(static_cast<size_t>(M * N), std::nanf(""));  // poisoned
  auto mm = sdk::make_op(XQ_OP_QMATMUL);
  mm.qweight = w;
  mm.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {M, K}, const_cast<float*>(x.data()));
  mm.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {N}, const_cast<float*>(bias.data()));
  mm.dst = sdk::device_tensor(XQ_DTYPE_F32, {M, N}, y.data());
  EXPECT_NE(test::cpu_provider().vt().supports_op(test::cpu_provider().p->state, &mm), 0);
  EXPECT_EQ(test::cpu_provider().vt().run_op(test::cpu_provider().p->state, &mm), XQ_OK);
  return y;
}

}  // namespace

TEST(CpuW4Afp8, QmatmulRunsTheInt4KernelOnE4m3RoundedRows) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t N = 37, K = 80, group = 32;  // a ragged last group (padding)
  Int4Weight fp8w(N, K, group, true, rng);
  Int4Weight plain = fp8w;  // the same codes and scales, weight-only
  plain.t.act_scheme = XQ_ACT_NONE;
  plain.t.act_bits = 0;
  plain.t.codes = plain.codes.data();
  plain.t.scales = plain.scales.data();
  Prepared a(fp8w.t), b(plain.t);
  ASSERT_NE(a.w, nullptr);
  ASSERT_NE(b.w, nullptr);
  for (int64_t M : {1, 3, 6, 70}) {  // decode GEMV and prefill paths
    SCOPED_TRACE("M " + std::to_string(M));
    std::vector<float> x(static_cast<size_t>(M * K)), bias(static_cast<size_t>(N));
    for (auto& v : x) v = nd(rng) * 3.0f;
    for (auto& v : bias) v = nd(rng);
    if (M > 1)
      for (int64_t k = 0; k < K; ++k) x[size_t(K + k)] = 0.0f;  // an all-zero token
    const std::vector<float> xr = rounded_rows(x, M, K);
    const auto y = qmatmul(a.w, x, bias, M, N, K);
    const auto y_rounded = qmatmul(b.w, xr, bias, M, N, K);
    const auto y_plain = qmatmul(b.w, x, bias, M, N, K);
    EXPECT_EQ(std::memcmp(y.data(), y_rounded.data(), y.size() * 4), 0)
        << "W4AFP8 differs from weight-only on the E4M3-rounded rows";
    EXPECT_NE(std::memcmp(y.data(), y_plain.data(), y.size() * 4), 0) << "activations were not rounded";
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = bias[size_t(n)], mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          acc += xr[size_t(m * K + k)] * fp8w.w(n, k);
          mag += std::fabs(xr[size_t(m * K + k)] * fp8w.w(n, k));
        }
        // The INT4 decode GEMV requantizes activations to int8 per 32 columns
        // (the W4A16 path's own approximation): within 1% of sum |terms|.
        ASSERT_NEAR(y[size_t(m * N + n)], acc, 1e-2 * mag + 1e-5) << "m " << m << " n " << n;
      }
  }
}

TEST(CpuW4Afp8, RefusesFp8ActivationsItCannotRun) {
  std::mt19937 rng(5);
  Int4Weight w(16, 64, 32, true, rng);
  w.t.act_scheme = XQ_ACT_STATIC_TENSOR;  // static FP8 activation scales: no such path
  w.t.input_scale = 0.5f;
  xq_qweight* q = nullptr;
  EXPECT_EQ(test::cpu_provider().vt().qweight_prepare(test::cpu_provider().p->state, &w.t, &q), XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(q, nullptr);
}

}  // namespace test_cpu_w4afp8
