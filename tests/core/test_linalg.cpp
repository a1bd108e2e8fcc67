// test_linalg.cpp: the host's linear-algebra services (used by GPTQ/AWQ)
// against direct float64 computations on random matrices.
#include "core/error.hpp"
#include "core/linalg.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

using namespace xquant;

namespace {
std::vector<float> random_matrix(int64_t r, int64_t c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> m(static_cast<size_t>(r * c));
  for (auto& x : m) x = nd(rng);
  return m;
}
// A^T A + n*I: symmetric positive definite.
std::vector<float> spd(int64_t n, unsigned seed) {
  auto x = random_matrix(2 * n, n, seed);
  std::vector<float> h(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < 2 * n; ++k) s += double(x[k * n + i]) * x[k * n + j];
      h[i * n + j] = static_cast<float>(s + (i == j ? n : 0));
    }
  return h;
}
}  // namespace

TEST(Linalg, SyrkMatchesDirectProduct) {
  const int64_t n = 37, k = 53;
  auto a = random_matrix(k, n, 1);
  std::vector<float> c(n * n, 1.0f);
  linalg::ssyrk(n, k, 2.0f, a.data(), n, 0.5f, c.data(), n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < k; ++t) s += double(a[t * n + i]) * a[t * n + j];
      EXPECT_NEAR(c[i * n + j], 2.0 * s + 0.5, 1e-3 * (1 + std::fabs(s)));
    }
}

TEST(Linalg, CholeskyUpperReconstructsAndInverts) {
  const int64_t n = 48;
  auto h = spd(n, 2);
  auto u = h;
  linalg::spotrf(true, n, u.data(), n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) EXPECT_EQ(u[i * n + j], 0.0f);  // lower zeroed
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += double(u[t * n + i]) * u[t * n + j];  // U^T U
      EXPECT_NEAR(s, h[i * n + j], 1e-3 * (1 + std::fabs(h[i * n + j])));
    }
  linalg::spotri(true, n, u.data(), n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += double(u[i * n + t]) * h[t * n + j];
      EXPECT_NEAR(s, i == j ? 1.0 : 0.0, 1e-4);
    }
}

TEST(Linalg, NotPositiveDefiniteFailsAndLeavesInputUnchanged) {
  std::vector<float> a = {1, 2, 2, 1};  // eigenvalues 3, -1
  auto before = a;
  try {
    linalg::spotrf(true, 2, a.data(), 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("leading minor of order 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(a, before);
}

// Across the 64-column tiles the symmetry check walks: a symmetric
// indefinite matrix and the same with one far entry off by a little (not
// symmetric: the full-copy path) both fail and come back unchanged.
TEST(Linalg, NotPositiveDefiniteFailsUnchangedAcrossTiles) {
  const int64_t n = 150;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> sym(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) sym[i * n + j] = sym[j * n + i] = u(rng);  // indefinite: random symmetric
  auto skew = sym;
  skew[3 * n + 140] += 1e-3f;
  for (bool upper : {true, false})
    for (const auto* m : {&sym, &skew}) {
      auto a = *m;
      EXPECT_THROW(linalg::spotrf(upper, n, a.data(), n), Error) << "upper " << upper;
      EXPECT_EQ(a, *m) << "upper " << upper << (m == &sym ? ", symmetric" : ", not symmetric");
    }
}

TEST(Linalg, TriangularSolve) {
  const int64_t n = 20, m = 7;
  auto h = spd(n, 3);
  linalg::spotrf(false, n, h.data(), n);  // lower L
  auto b = random_matrix(n, m, 4), x = b;
  linalg::strsm(true, false, false, n, m, h.data(), n, x.data(), m);  // L X = B
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (int64_t t = 0; t < n; ++t) s += double(h[i * n + t]) * x[t * m + j];
      EXPECT_NEAR(s, b[i * m + j], 1e-4);
    }
}

TEST(Linalg, GemmWithTransposes) {
  const int64_t m = 5, n = 6, k = 7;
  auto a = random_matrix(k, m, 5), b = random_matrix(n, k, 6);  // A^T is m x k, B^T is k x n
  std::vector<float> c(m * n, 0.0f);
  linalg::sgemm(true, true, m, n, k, 1.0f, a.data(), m, b.data(), k, 0.0f, c.data(), n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t t = 0; t < k; ++t) s += double(a[t * m + i]) * b[j * k + t];
      EXPECT_NEAR(c[i * n + j], s, 1e-4);
    }
  EXPECT_THROW(linalg::sgemm(false, false, m, n, k, 1.0f, a.data(), 2, b.data(), n, 0.0f, c.data(), n), Error);
}
