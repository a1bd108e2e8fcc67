// test_rtn_math.cpp: the RTN arithmetic of sdk/quantizer.hpp (what the rtn
// plugin and the calibration algorithms quantize with) against hand-computed cases: the
// compressed-tensors denominators (amax/7.5, (max-min)/15), half-to-even
// rounding, clamping, zero points, the ragged last group, scales rounded to
// their storage dtype, zero rows.
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/quantizer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

using namespace xquant::sdk::quant;

namespace {
Scheme scheme(int bits, bool sym, xq_strategy g, int64_t gs = 0, xq_dtype sd = XQ_DTYPE_F32) {
  Scheme s;
  s.bits = bits;
  s.symmetric = sym;
  s.strategy = g;
  s.group_size = gs;
  s.scale_dtype = sd;
  return s;
}
}  // namespace

TEST(RtnMath, SymmetricInt4GroupWithRaggedLastGroup) {
  // One row of 6 columns, groups of 4: [1, -2, 3, .5] and the ragged [.6, -.3].
  std::vector<float> w = {1.0f, -2.0f, 3.0f, 0.5f, 0.6f, -0.3f};
  auto s = scheme(4, true, XQ_STRATEGY_GROUP, 4);
  ASSERT_EQ(s.groups(6), 2);
  std::vector<int8_t> codes(6);
  std::vector<float> scales(2);
  ErrorSums e = rtn_rows_sums(s, w.data(), 6, 0, 1, codes.data(), scales.data(), nullptr);
  EXPECT_FLOAT_EQ(scales[0], 3.0f / 7.5f);  // amax / ((2^4 - 1) / 2)
  EXPECT_FLOAT_EQ(scales[1], 0.6f / 7.5f);
  // 1/.4 = 2.5 -> 2 (half to even); -2/.4 = -5; 3/.4 = 7.5 -> 7 (clamped at
  // qmax); .5/.4 = 1.25 -> 1; .6/.08 = 7.5 -> 7; -.3/.08 = -3.75 -> -4.
  EXPECT_EQ(codes, (std::vector<int8_t>{2, -5, 7, 1, 7, -4}));
  double d2 = 0, r2 = 0;
  for (int c = 0; c < 6; ++c) {
    double deq = codes[c] * static_cast<double>(scales[c / 4]);
    d2 += (w[c] - deq) * (w[c] - deq);
    r2 += double(w[c]) * w[c];
  }
  EXPECT_NEAR(e.diff2, d2, 1e-6 * d2);  // float vs double dequantization
  EXPECT_NEAR(e.ref2, r2, 1e-6 * r2);  // float lanes, then double
}

TEST(RtnMath, AsymmetricInt4ExtendsRangeToZero) {
  // All positive: min is extended to 0, so scale = 3/15 and zp = qmin = -8.
  std::vector<float> w = {0.5f, 1.0f, 2.0f, 3.0f};
  auto s = scheme(4, false, XQ_STRATEGY_CHANNEL);
  std::vector<int8_t> codes(4), zp(1);
  std::vector<float> scales(1);
  rtn_rows_sums(s, w.data(), 4, 0, 1, codes.data(), scales.data(), zp.data());
  EXPECT_FLOAT_EQ(scales[0], 3.0f / 15.0f);
  EXPECT_EQ(zp[0], -8);
  EXPECT_EQ(codes, (std::vector<int8_t>{-6, -3, 2, 7}));  // round(x/.2 - 8): -5.5 -> -6 (even)
}

TEST(RtnMath, AsymmetricInt4ZeroPoint) {
  std::vector<float> w = {-1.0f, -0.5f, 2.0f, 1.0f};
  auto s = scheme(4, false, XQ_STRATEGY_CHANNEL);
  std::vector<int8_t> codes(4), zp(1);
  std::vector<float> scales(1);
  rtn_rows_sums(s, w.data(), 4, 0, 1, codes.data(), scales.data(), zp.data());
  EXPECT_FLOAT_EQ(scales[0], 0.2f);
  EXPECT_EQ(zp[0], -3);  // round(-8 - (-1 / .2))
  EXPECT_EQ(codes, (std::vector<int8_t>{-8, -6, 7, 2}));
  for (int c = 0; c < 4; ++c) EXPECT_NEAR((codes[c] - zp[0]) * scales[0], w[c], 0.1 + 1e-6);
}

TEST(RtnMath, Int8PerChannelUses127Point5) {
  std::vector<float> w = {-2.55f, 1.0f, 0.01f, 2.0f, /* row 2 */ 0.0f, 0.0f, 0.0f, 0.0f};
  auto s = scheme(8, true, XQ_STRATEGY_CHANNEL);
  std::vector<int8_t> codes(8);
  std::vector<float> scales(2);
  rtn_rows_sums(s, w.data(), 4, 0, 2, codes.data(), scales.data(), nullptr);
  EXPECT_FLOAT_EQ(scales[0], 2.55f / 127.5f);
  EXPECT_EQ(codes[0], -128);  // the negative extreme reaches qmin exactly
  EXPECT_EQ(codes[1], static_cast<int8_t>(std::nearbyint(1.0f / scales[0])));
  // A zero row gets epsilon as its scale (not a division by zero) and zero codes.
  EXPECT_FLOAT_EQ(scales[1], std::numeric_limits<float>::epsilon());
  for (int c = 4; c < 8; ++c) EXPECT_EQ(codes[c], 0);
}

TEST(RtnMath, TensorStrategyHasOneScale) {
  std::vector<float> w = {0.1f, -0.7f, 0.3f, 0.35f, -0.2f, 0.05f};
  auto s = scheme(2, true, XQ_STRATEGY_TENSOR);
  std::vector<int8_t> codes(6);
  float scale = 0;
  rtn_tensor_sums(s, w.data(), 2, 3, codes.data(), &scale, nullptr);
  EXPECT_FLOAT_EQ(scale, 0.7f / 1.5f);  // 2-bit: amax / ((4 - 1) / 2)
  for (int c = 0; c < 6; ++c) {
    EXPECT_GE(codes[c], -2);
    EXPECT_LE(codes[c], 1);
  }
  EXPECT_EQ(codes[1], -2);  // -0.7 / 0.4667 = -1.5 -> -2 (even)
}

TEST(RtnMath, ScalesAreRoundedToTheirStorageDtype) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  const int rows = 8, cols = 96;
  std::vector<float> w(rows * cols);
  for (auto& x : w) x = nd(rng);
  for (xq_dtype sd : {XQ_DTYPE_BF16, XQ_DTYPE_F16}) {
    auto s = scheme(4, false, XQ_STRATEGY_GROUP, 32, sd);
    std::vector<int8_t> codes(w.size()), zp(rows * 3);
    std::vector<float> scales(rows * 3);
    rtn_rows_sums(s, w.data(), cols, 0, rows, codes.data(), scales.data(), zp.data());
    for (float sc : scales) {
      float stored = sd == XQ_DTYPE_BF16 ? xquant::sdk::round_to_bf16(sc) : xquant::sdk::round_to_f16(sc);
      EXPECT_EQ(sc, stored);
    }
    // Codes were computed with the stored scale: re-deriving them agrees.
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        int g = r * 3 + c / 32;
        float q = std::nearbyint(w[r * cols + c] / scales[g] + zp[g]);
        q = std::min(7.0f, std::max(-8.0f, q));
        EXPECT_EQ(codes[r * cols + c], static_cast<int8_t>(q)) << r << "," << c;
      }
  }
}

TEST(RtnMath, RandomMatricesStayWithinHalfAStep) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  for (int bits : {2, 3, 4, 5, 8}) {
    const int rows = 5, cols = 172;  // 172 = stories260K's FFN width: ragged for 32/64/128
    std::vector<float> w(rows * cols);
    for (auto& x : w) x = ud(rng);
    auto s = scheme(bits, true, XQ_STRATEGY_GROUP, 64);
    const int ng = static_cast<int>(s.groups(cols));
    ASSERT_EQ(ng, 3);
    std::vector<int8_t> codes(w.size());
    std::vector<float> scales(rows * ng);
    rtn_rows_sums(s, w.data(), cols, 0, rows, codes.data(), scales.data(), nullptr);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        float sc = scales[r * ng + c / 64];
        float err = std::fabs(w[r * cols + c] - codes[r * cols + c] * sc);
        // Half a step, except the clipped +amax end (one step at most).
        EXPECT_LE(err, sc * 1.0001f) << "bits " << bits;
        EXPECT_GE(codes[r * cols + c], -(1 << (bits - 1)));
        EXPECT_LE(codes[r * cols + c], (1 << (bits - 1)) - 1);
      }
  }
}
