// test_cpu_bf16_gemv.cpp: the decode GEMV on BF16 weights (bf16_gemv.cpp).
//   1. Each exact path (scalar, AVX2, AVX-512) bit-identical to the scalar
//      one, and the scalar one within float rounding of a double reference,
//      on fresh random rows and odd shapes (K = 1 .. 1000, not multiples of
//      16 or 32; row counts not multiples of 4).
//   2. The AVX512_BF16 path (vdpbf16ps) within float rounding of a double
//      reference on the BF16-rounded activation, and within the activation's
//      BF16 rounding of the exact result.
//   3. Through the real plugin, MATMUL at M = 1 with each path forced
//      (XQUANT_CPU_BF16_GEMV): the exact paths give the logits of MATMUL on
//      the F32 copy of the weights bit for bit; an unknown path name is an
//      error naming it.
// A path the CPU lacks is skipped with a message naming it.
#include "../support/cpu_provider_fixture.hpp"
#include "bf16_gemv.hpp"
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
using cpu::Bf16GemvPath;

namespace {

std::mt19937 rng(20261201);

struct Bf16Rows {
  int64_t n, k;
  std::vector<uint16_t> w;  // [n, k] BF16
  std::vector<float> x;     // [k]
};

Bf16Rows random_rows(int64_t n, int64_t k) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  Bf16Rows r{n, k, std::vector<uint16_t>(static_cast<size_t>(n * k)), std::vector<float>(static_cast<size_t>(k))};
  for (auto& v : r.w) v = sdk::f32_to_bf16(d(rng));
  for (auto& v : r.x) v = d(rng);
  return r;
}

std::vector<float> run_path(Bf16GemvPath p, const Bf16Rows& r) {
  std::vector<uint16_t> xb(static_cast<size_t>(r.k));
  cpu::bf16_round_activation(r.x.data(), r.k, xb.data());
  std::vector<float> out(static_cast<size_t>(r.n), NAN);
  cpu::bf16_gemv_rows(p, r.w.data(), r.x.data(), xb.data(), r.k, 0, r.n, out.data());
  return out;
}

// sum over the row in double, and the sum of |terms| (the rounding scale);
// x_bf16 rounds the activation first.
void reference(const Bf16Rows& r, int64_t row, bool x_bf16, double& sum, double& abs_sum) {
  sum = abs_sum = 0;
  for (int64_t i = 0; i < r.k; ++i) {
    const double x = x_bf16 ? sdk::round_to_bf16(r.x[i]) : r.x[i];
    const double t = static_cast<double>(sdk::bf16_to_f32(r.w[row * r.k + i])) * x;
    sum += t;
    abs_sum += std::fabs(t);
  }
}

const int64_t kShapes[][2] = {{1, 1}, {3, 15}, {4, 16}, {5, 17}, {17, 31}, {9, 33}, {8, 64}, {7, 576}, {13, 1000}};

#define SKIP_UNLESS_CPU_HAS(p) \
  if (!cpu::cpu_has_bf16_gemv_path(p)) GTEST_SKIP() << "this CPU lacks " << cpu::bf16_gemv_path_name(p) << ": path not tested"

}  // namespace

TEST(Bf16Gemv, ScalarPathWithinRoundingOfDoubleReference) {
  for (const auto& s : kShapes) {
    const Bf16Rows r = random_rows(s[0], s[1]);
    const std::vector<float> got = run_path(Bf16GemvPath::scalar, r);
    for (int64_t row = 0; row < r.n; ++row) {
      double sum, abs_sum;
      reference(r, row, false, sum, abs_sum);
      EXPECT_NEAR(got[row], sum, 2e-7 * static_cast<double>(r.k) * abs_sum + 1e-30) << "k " << r.k << " row " << row;
    }
  }
}

class Bf16GemvExactPath : public ::testing::TestWithParam<Bf16GemvPath> {};

TEST_P(Bf16GemvExactPath, BitIdenticalToScalar) {
  SKIP_UNLESS_CPU_HAS(GetParam());
  for (const auto& s : kShapes) {
    const Bf16Rows r = random_rows(s[0], s[1]);
    EXPECT_EQ(run_path(GetParam(), r), run_path(Bf16GemvPath::scalar, r)) << "n " << r.n << " k " << r.k;
    // A row range not starting at 0 writes out[r - r0].
    if (r.n >= 3) {
      std::vector<float> part(static_cast<size_t>(r.n - 1), NAN), all = run_path(GetParam(), r);
      cpu::bf16_gemv_rows(GetParam(), r.w.data(), r.x.data(), nullptr, r.k, 1, r.n, part.data());
      EXPECT_EQ(part, std::vector<float>(all.begin() + 1, all.end())) << "rows 1.." << r.n << " k " << r.k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, Bf16GemvExactPath, ::testing::Values(Bf16GemvPath::avx2, Bf16GemvPath::avx512),
                         [](const auto& info) { return std::string(cpu::bf16_gemv_path_name(info.param)); });

TEST(Bf16Gemv, DpBf16PathWithinActivationRounding) {
  SKIP_UNLESS_CPU_HAS(Bf16GemvPath::avx512bf16);
  for (const auto& s : kShapes) {
    const Bf16Rows r = random_rows(s[0], s[1]);
    const std::vector<float> got = run_path(Bf16GemvPath::avx512bf16, r);
    for (int64_t row = 0; row < r.n; ++row) {
      double sum_b, abs_b, sum_x, abs_x;
      reference(r, row, true, sum_b, abs_b);
      reference(r, row, false, sum_x, abs_x);
      const std::string where = "k " + std::to_string(r.k) + " row " + std::to_string(row);
      EXPECT_NEAR(got[row], sum_b, 2e-7 * static_cast<double>(r.k) * abs_b + 1e-30) << where;
      EXPECT_NEAR(got[row], sum_x, 0x1p-8 * abs_x + 2e-7 * static_cast<double>(r.k) * abs_x + 1e-30) << where;
    }
  }
}

// ---- through the plugin ------------------------------------------------------

namespace {

test::CpuProvider& fx() { return test::cpu_provider(); }

using test::ScopedEnv;

// MATMUL at M = 1 on the BF16 weights and on their F32 copy.
void matmul_both(const Bf16Rows& r, std::vector<float>& y16, std::vector<float>& y32, xq_status& st16) {
  std::vector<float> w32(r.w.size());
  for (size_t i = 0; i < w32.size(); ++i) w32[i] = sdk::bf16_to_f32(r.w[i]);
  y16.assign(static_cast<size_t>(r.n), NAN);
  y32.assign(static_cast<size_t>(r.n), NAN);
  xq_op op = sdk::make_op(XQ_OP_MATMUL);
  op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {1, r.k}, r.x.data());
  op.src[1] = sdk::device_tensor(XQ_DTYPE_BF16, {r.n, r.k}, r.w.data());
  op.dst = sdk::device_tensor(XQ_DTYPE_F32, {1, r.n}, y16.data());
  st16 = fx().run(op);
  op.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {r.n, r.k}, w32.data());
  op.dst = sdk::device_tensor(XQ_DTYPE_F32, {1, r.n}, y32.data());
  ASSERT_EQ(fx().run(op), XQ_OK);
}

}  // namespace

class Bf16MatmulForced : public ::testing::TestWithParam<Bf16GemvPath> {};

TEST_P(Bf16MatmulForced, DecodeEqualsF32WeightsBitForBit) {
  ASSERT_NE(fx().p, nullptr);
  SKIP_UNLESS_CPU_HAS(GetParam());
  ScopedEnv force("XQUANT_CPU_BF16_GEMV", cpu::bf16_gemv_path_name(GetParam()));
  // 2100 rows: several pool tasks (the grain is >= 32 rows); K odd.
  for (int64_t k : {33, 576}) {
    const Bf16Rows r = random_rows(2100, k);
    std::vector<float> y16, y32;
    xq_status st;
    matmul_both(r, y16, y32, st);
    ASSERT_EQ(st, XQ_OK);
    EXPECT_EQ(y16, y32) << "K = " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, Bf16MatmulForced,
                         ::testing::Values(Bf16GemvPath::scalar, Bf16GemvPath::avx2, Bf16GemvPath::avx512),
                         [](const auto& info) { return std::string(cpu::bf16_gemv_path_name(info.param)); });

TEST(Bf16MatmulForcedPath, DpBf16WithinActivationRoundingThroughPlugin) {
  ASSERT_NE(fx().p, nullptr);
  SKIP_UNLESS_CPU_HAS(Bf16GemvPath::avx512bf16);
  ScopedEnv force("XQUANT_CPU_BF16_GEMV", "avx512bf16");
  const Bf16Rows r = random_rows(300, 576);
  std::vector<float> y16, y32;
  xq_status st;
  matmul_both(r, y16, y32, st);
  ASSERT_EQ(st, XQ_OK);
  for (int64_t row = 0; row < r.n; ++row) {
    double sum, abs_sum;
    reference(r, row, false, sum, abs_sum);
    EXPECT_NEAR(y16[row], y32[row], 0x1p-8 * abs_sum + 1e-4 * abs_sum) << "row " << row;
  }
}

TEST(Bf16MatmulForcedPath, UnknownPathIsAnErrorNotACrash) {
  ASSERT_NE(fx().p, nullptr);
  ScopedEnv force("XQUANT_CPU_BF16_GEMV", "avx9000");
  const Bf16Rows r = random_rows(4, 32);
  std::vector<float> y16, y32;
  xq_status st = XQ_OK;
  matmul_both(r, y16, y32, st);
  EXPECT_EQ(st, XQ_ERR_INVALID_ARGUMENT);
  EXPECT_THROW(cpu::selected_bf16_gemv_path(), sdk::Error);
}
