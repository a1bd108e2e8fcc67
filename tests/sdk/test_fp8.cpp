// test_fp8.cpp: the FP8 E4M3FN encoder and decoder of sdk/fp8.hpp, against
// the format's definition for all 256 codes, a double-precision nearest-value
// reference on fresh random floats, and torch's cast (a fixture written by
// tests/interop/make_e4m3_fixture.py), and the canonical tensor's FP8 form.
#include "fake_host.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace sdk = xquant::sdk;

namespace {

// The value of a code from the format's definition, in double.
double e4m3_reference(int c) {
  const int sign = c >> 7, exp = (c >> 3) & 15, mant = c & 7;
  if (exp == 15 && mant == 7) return NAN;
  const double mag = exp == 0 ? mant * std::ldexp(1.0, -9) : (1.0 + mant / 8.0) * std::ldexp(1.0, exp - 7);
  return sign ? -mag : mag;
}

// Nearest code by search over the finite codes (ties to the even code, the
// one whose lowest bit is 0), after clamping to +-448.
uint8_t encode_reference(float x) {
  if (std::isnan(x)) return 0x7F;
  const double v = std::fmax(-448.0, std::fmin(448.0, static_cast<double>(x)));
  int best = -1;
  double best_d = INFINITY;
  for (int c = 0; c < 256; ++c) {
    const double r = e4m3_reference(c);
    if (std::isnan(r) || (r == 0.0 && std::signbit(r) != std::signbit(v))) continue;
    const double d = std::fabs(r - v);
    if (d < best_d || (d == best_d && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      best_d = d;
    }
  }
  return static_cast<uint8_t>(best);
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

TEST(Fp8E4M3, EveryCodeDecodesToItsDefinedValueAndEncodesBack) {
  int nan = 0;
  for (int c = 0; c < 256; ++c) {
    const double ref = e4m3_reference(c);
    const float v = sdk::e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(v)) << c;
      ++nan;
      continue;
    }
    EXPECT_EQ(static_cast<double>(v), ref) << "code " << c;
    EXPECT_EQ(std::signbit(v), c >= 128) << c;
    EXPECT_EQ(sdk::f32_to_e4m3(v), c) << "code " << c << " value " << v;
  }
  EXPECT_EQ(nan, 2);  // 0x7f and 0xff only: E4M3FN has no infinities
  EXPECT_EQ(sdk::e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(sdk::e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(sdk::e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
}

TEST(Fp8E4M3, EncoderSaturatesAndKeepsNaN) {
  for (float v : {448.0f, 449.0f, 464.0f, 480.0f, 1e6f, INFINITY}) {
    EXPECT_EQ(sdk::f32_to_e4m3(v), 0x7E) << v;
    EXPECT_EQ(sdk::f32_to_e4m3(-v), 0xFE) << v;
  }
  EXPECT_EQ(sdk::f32_to_e4m3(NAN) & 0x7F, 0x7F);
  EXPECT_EQ(sdk::f32_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(sdk::f32_to_e4m3(-0.0f), 0x80);
  // Ties go to the even code: 1.0625 lies halfway between 1.0 (0x38) and 1.125 (0x39).
  EXPECT_EQ(sdk::f32_to_e4m3(1.0625f), 0x38);
  EXPECT_EQ(sdk::f32_to_e4m3(1.1875f), 0x3A);  // between 0x39 and 0x3A: even is 0x3A
  // Half the smallest subnormal rounds to zero (tie, even), just above it to 2^-9.
  EXPECT_EQ(sdk::f32_to_e4m3(std::ldexp(1.0f, -10)), 0x00);
  EXPECT_EQ(sdk::f32_to_e4m3(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
}

TEST(Fp8E4M3, EncoderIsTheNearestCodeOnRandomFloats) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> exponent(-16.0f, 10.0f);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 20000; ++i) {
    // Half log-uniform magnitudes over the whole range, half arbitrary bit patterns.
    const float x = i % 2 ? std::exp2(exponent(rng)) * (rng() % 2 ? -1.0f : 1.0f) : from_bits(any_bits(rng));
    if (std::isnan(x)) continue;
    ASSERT_EQ(sdk::f32_to_e4m3(x), encode_reference(x)) << "x = " << x;
  }
}

TEST(Fp8E4M3, EncoderMatchesTorch) {
  std::ifstream in(std::filesystem::path(XQUANT_SOURCE_DIR) / "tests/sdk/fixtures/e4m3_torch.txt");
  ASSERT_TRUE(in) << "fixture tests/sdk/fixtures/e4m3_torch.txt missing";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    unsigned bits = 0, cast = 0, clamped = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "%x %x %x", &bits, &cast, &clamped), 3) << line;
    const float x = from_bits(bits);
    const uint8_t ours = sdk::f32_to_e4m3(x);
    if (std::isnan(x)) {
      EXPECT_EQ(ours & 0x7F, 0x7F);
      EXPECT_EQ(clamped & 0x7F, 0x7Fu);
    } else {
      // torch: x.clamp(-448, 448).to(torch.float8_e4m3fn), as compressed-tensors quantizes.
      EXPECT_EQ(ours, clamped) << line << " x = " << x;
    }
    ++n;
  }
  EXPECT_GT(n, 4000);
}

TEST(Fp8E4M3, CanonicalTensorDequantizesFloatCodes) {
  EXPECT_EQ(XQ_BITS_F8_E4M3, 0x0E08u);
  EXPECT_TRUE(sdk::is_float_code(XQ_BITS_F8_E4M3));
  EXPECT_FALSE(sdk::is_float_code(8));
  EXPECT_EQ(sdk::code_width(XQ_BITS_F8_E4M3), 8u);
  EXPECT_EQ(XQ_CODE_DTYPE(XQ_BITS_F8_E4M3), XQ_DTYPE_F8_E4M3);
  for (xq_strategy st : {XQ_STRATEGY_CHANNEL, XQ_STRATEGY_TENSOR}) {
    std::vector<int8_t> codes = {0x38, static_cast<int8_t>(0xB8), 0x7E, 0x01, 0x40, 0x00};  // 1, -1, 448, 2^-9, 2, 0
    std::vector<float> scales = {0.5f, 0.25f};
    xq_quant_tensor t = sdk::make_struct<xq_quant_tensor>();
    t.bits = XQ_BITS_F8_E4M3;
    t.symmetric = 1;
    t.strategy = st;
    t.rows = 2;
    t.cols = 3;
    t.group_size = 3;
    t.n_groups = 1;
    t.codes = codes.data();
    t.scales = scales.data();
    t.scale_dtype = XQ_DTYPE_F32;
    sdk::QuantTensor q(t, nullptr, nullptr);  // borrowed buffers: no free function
    float row[3];
    const float s1 = st == XQ_STRATEGY_TENSOR ? 0.5f : 0.25f;
    q.dequantize_row(0, row);
    EXPECT_EQ(row[0], 0.5f);
    EXPECT_EQ(row[1], -0.5f);
    EXPECT_EQ(row[2], 224.0f);
    q.dequantize_row(1, row);
    EXPECT_EQ(row[0], std::ldexp(1.0f, -9) * s1);
    EXPECT_EQ(row[1], 2.0f * s1);
    EXPECT_EQ(row[2], 0.0f);
    q.release();
  }
}
