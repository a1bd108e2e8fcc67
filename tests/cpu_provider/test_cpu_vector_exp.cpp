// test_cpu_vector_exp.cpp: the cpu provider's vectorized exp
// (plugins/cpu/src/vector_exp.cpp) against exp in double on fresh random
// arguments over float's normal range, at every row length's tail, in place,
// and at the ends (underflow to 0, overflow to +inf, NaN kept). The attention
// that uses it is checked against a double reference in test_cpu_provider.cpp.
#include "vector_exp.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

using xquant::cpu::exp_shifted_sum;
using xquant::cpu::row_max;
using xquant::cpu::silu_mul;

namespace {

std::mt19937 fresh_rng() {
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  return std::mt19937(seed);
}

// The largest relative error of y against exp(x - shift) in double, over the
// arguments whose exact result is a normal float.
double worst_relative_error(const std::vector<float>& x, const std::vector<float>& y, float shift) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i] - shift));
    if (want < std::numeric_limits<float>::min() || want > std::numeric_limits<float>::max()) continue;
    worst = std::max(worst, std::abs(y[i] - want) / want);
  }
  return worst;
}

}  // namespace

TEST(VectorExp, MatchesDoubleExpOverTheNormalRange) {
  auto rng = fresh_rng();
  std::uniform_real_distribution<float> d(-87.3f, 88.7f);
  std::vector<float> x(100003), y(x.size());
  for (auto& v : x) v = d(rng);
  exp_shifted_sum(x.data(), y.data(), static_cast<int64_t>(x.size()), 0.0f);
  // Cephes' expf polynomial is good to about 1 ulp; 3e-7 is 2.5 ulp at 2^-23.
  EXPECT_LT(worst_relative_error(x, y, 0.0f), 3e-7);
}

TEST(VectorExp, SoftmaxRowsOfEveryTailLengthInPlace) {
  auto rng = fresh_rng();
  std::normal_distribution<float> d(0.0f, 4.0f);
  for (int64_t n = 1; n <= 67; ++n) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = d(rng);
    float mx = x[0];
    for (float v : x) mx = std::max(mx, v);
    std::vector<float> y = x;
    const float sum = exp_shifted_sum(y.data(), y.data(), n, mx);
    double want_sum = 0;
    for (float v : x) want_sum += std::exp(static_cast<double>(v - mx));
    EXPECT_LT(worst_relative_error(x, y, mx), 3e-7) << "n " << n;
    EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << "n " << n;
  }
}

TEST(VectorExp, UnderflowOverflowAndNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {-inf, -1e30f, -104.0f, -100.0f, -90.0f, 0.0f, 88.5f, 89.0f, 1e30f, inf, nan, -87.3f};
  std::vector<float> y(x.size());
  exp_shifted_sum(x.data(), y.data(), static_cast<int64_t>(x.size()), 0.0f);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);
  // Results below FLT_MIN are flushed to 0 (no subnormals), those just above
  // it are normal floats.
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_GE(y[11], std::numeric_limits<float>::min());
  EXPECT_NEAR(y[11], std::exp(double(x[11])), 3e-7 * std::exp(double(x[11])));
  EXPECT_EQ(y[5], 1.0f);
  EXPECT_NEAR(y[6], std::exp(double(x[6])), 3e-7 * std::exp(double(x[6])));
  EXPECT_EQ(y[7], inf);
  EXPECT_EQ(y[8], inf);
  EXPECT_EQ(y[9], inf);
  EXPECT_TRUE(std::isnan(y[10]));
}

TEST(VectorExp, RowMaxIsTheScalarMaxAtEveryLengthAndSkipsNaN) {
  auto rng = fresh_rng();
  std::normal_distribution<float> d(0.0f, 10.0f);
  for (int64_t n = 0; n <= 67; ++n) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = d(rng);
    float want = -std::numeric_limits<float>::infinity();
    for (float v : x) want = std::max(want, v);
    EXPECT_EQ(row_max(x.data(), n), want) << "n " << n;
    if (n > 0) {
      x[static_cast<size_t>(n) / 2] = std::numeric_limits<float>::quiet_NaN();
      want = -std::numeric_limits<float>::infinity();
      for (float v : x) want = std::max(want, v);
      EXPECT_EQ(row_max(x.data(), n), want) << "n " << n << " with a NaN";
    }
  }
}

TEST(VectorExp, SiluMulMatchesDoubleAtEveryTailAndTheEnds) {
  auto rng = fresh_rng();
  std::uniform_real_distribution<float> d(-100.0f, 100.0f);
  for (int64_t n = 1; n <= 67; ++n) {
    std::vector<float> a(static_cast<size_t>(n)), g(a.size()), y(a.size());
    for (auto& v : a) v = d(rng);
    for (auto& v : g) v = d(rng);
    silu_mul(a.data(), g.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double want = a[i] / (1.0 + std::exp(-double(a[i]))) * g[i];
      EXPECT_NEAR(y[i], want, 5e-7 * std::abs(want) + 1e-30) << "n " << n << " a " << a[i];
    }
  }
  std::vector<float> a = {-200.0f, 200.0f, 0.0f, std::numeric_limits<float>::quiet_NaN()}, g(4, 2.0f), y(4);
  silu_mul(a.data(), g.data(), y.data(), 4);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 400.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_TRUE(std::isnan(y[3]));
}
