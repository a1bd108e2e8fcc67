// test_budget.cpp: the fallback's allocations against a byte budget
// (decide/budget.hpp). The knapsack is checked against brute force over
// every (group, rung) assignment on fresh random instances; the greedy and
// weight-error paths against what they promise.
#include "decide/budget.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

using namespace xquant::decide;

namespace {

// Random groups with a 3-rung ladder: bytes increasing, damage decreasing to 0.
std::vector<RungCosts> random_groups(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int> b0(100, 400), step(50, 900);
  std::uniform_real_distribution<double> dmg(0.0, 1.0);
  std::vector<RungCosts> g(static_cast<size_t>(n));
  for (auto& x : g) {
    const uint64_t a = b0(rng), b = a + step(rng), c = b + step(rng);
    const double d1 = dmg(rng) * 0.2, d0 = d1 + dmg(rng);
    x.bytes = {a, b, c};
    x.damage = {d0, d1, 0.0};
    x.weight_error = dmg(rng);
  }
  return g;
}

double brute_force(const std::vector<RungCosts>& g, uint64_t budget) {
  double best = std::numeric_limits<double>::infinity();
  const int n = static_cast<int>(g.size());
  int total = 1;
  for (int i = 0; i < n; ++i) total *= 3;
  for (int code = 0; code < total; ++code) {
    uint64_t bytes = 0;
    double damage = 0;
    for (int i = 0, c = code; i < n; ++i, c /= 3) {
      bytes += g[static_cast<size_t>(i)].bytes[static_cast<size_t>(c % 3)];
      damage += g[static_cast<size_t>(i)].damage[static_cast<size_t>(c % 3)];
    }
    if (bytes <= budget) best = std::min(best, damage);
  }
  return best;
}

}  // namespace

TEST(Budget, KnapsackIsOptimalAgainstBruteForce) {
  std::mt19937 rng(12);
  for (int trial = 0; trial < 40; ++trial) {
    const auto g = random_groups(rng, 7);
    uint64_t lo = 0, hi = 0;
    for (const auto& x : g) {
      lo += x.bytes[0];
      hi += x.bytes[2];
    }
    const uint64_t budget = lo + (hi - lo) * static_cast<uint64_t>(trial % 10 + 1) / 12;
    const Allocation a = knapsack(g, budget);
    EXPECT_LE(a.bytes, budget);
    EXPECT_NEAR(a.predicted, brute_force(g, budget), 1e-9) << "trial " << trial;
    // A coarse grid still fits the budget and is never better than optimal.
    const Allocation coarse = knapsack(g, budget, 16);
    EXPECT_LE(coarse.bytes, budget);
    EXPECT_GE(coarse.predicted, a.predicted - 1e-9);
  }
}

TEST(Budget, PathsRiseInBytesFromRungZeroToTheTop) {
  std::mt19937 rng(5);
  const auto g = random_groups(rng, 12);
  uint64_t top = 0;
  for (const auto& x : g) top += x.bytes.back();
  for (BudgetMethod m : {BudgetMethod::Greedy, BudgetMethod::Knapsack, BudgetMethod::WeightError}) {
    const auto path = allocation_path(g, m);
    ASSERT_GE(path.size(), 2u) << method_name(m);
    for (int r : path.front().rung) EXPECT_EQ(r, 0);
    EXPECT_EQ(path.back().bytes, top) << method_name(m);
    EXPECT_NEAR(path.back().predicted, 0.0, 1e-12) << method_name(m);
    for (size_t k = 1; k < path.size(); ++k) EXPECT_GT(path[k].bytes, path[k - 1].bytes) << method_name(m);
  }
}

TEST(Budget, KnapsackPathIsNeverWorseThanGreedyAtTheSameBytes) {
  std::mt19937 rng(9);
  const auto g = random_groups(rng, 20);
  for (const auto& step : allocation_path(g, BudgetMethod::Greedy)) {
    const Allocation k = knapsack(g, step.bytes, int64_t(1) << 17);  // exact: the gcd grid fits
    EXPECT_LE(k.predicted, step.predicted + 1e-9) << step.bytes;
  }
}

TEST(Budget, WeightErrorBaselineMovesLargestErrorFirstToTheTop) {
  std::vector<RungCosts> g(3);
  for (size_t i = 0; i < 3; ++i) {
    g[i].bytes = {100, 200, 400};
    g[i].damage = {1.0, 0.5, 0.0};
  }
  g[0].weight_error = 0.1;
  g[1].weight_error = 0.9;
  g[2].weight_error = 0.5;
  const auto path = allocation_path(g, BudgetMethod::WeightError);
  ASSERT_EQ(path.size(), 4u);
  EXPECT_EQ(path[1].rung, (std::vector<int>{0, 2, 0}));
  EXPECT_EQ(path[2].rung, (std::vector<int>{0, 2, 2}));
  EXPECT_EQ(path[3].rung, (std::vector<int>{2, 2, 2}));
}

// accuracy.max_bytes: every path stops at its last allocation within the
// limit; the knapsack spends its budgets up to the limit, so it ends at the
// optimum for exactly that many bytes.
TEST(Budget, PathsStayWithinMaxBytes) {
  std::mt19937 rng(21);
  for (int trial = 0; trial < 10; ++trial) {
    const auto g = random_groups(rng, 7);
    uint64_t lo = 0, hi = 0;
    for (const auto& x : g) {
      lo += x.bytes[0];
      hi += x.bytes[2];
    }
    const uint64_t limit = lo + (hi - lo) * static_cast<uint64_t>(trial + 1) / 12;
    for (BudgetMethod m : {BudgetMethod::Greedy, BudgetMethod::Knapsack, BudgetMethod::WeightError}) {
      const auto whole = allocation_path(g, m);
      const auto path = allocation_path(g, m, 48, limit);
      ASSERT_FALSE(path.empty()) << method_name(m);
      for (int r : path.front().rung) EXPECT_EQ(r, 0);
      for (const auto& a : path) EXPECT_LE(a.bytes, limit) << method_name(m) << " trial " << trial;
      if (m != BudgetMethod::Knapsack) {
        // The same path, cut where it first exceeds the limit.
        ASSERT_LT(path.size(), whole.size()) << method_name(m);
        for (size_t k = 0; k < path.size(); ++k) EXPECT_EQ(path[k].rung, whole[k].rung) << method_name(m);
        EXPECT_GT(whole[path.size()].bytes, limit) << method_name(m);
      }
    }
    EXPECT_NEAR(allocation_path(g, BudgetMethod::Knapsack, 48, limit).back().predicted, brute_force(g, limit), 1e-9)
        << "trial " << trial;
  }
}

TEST(Budget, MaxBytesBelowRungZeroLeavesOnlyTheStart) {
  std::mt19937 rng(3);
  const auto g = random_groups(rng, 5);
  uint64_t lo = 0;
  for (const auto& x : g) lo += x.bytes[0];
  for (BudgetMethod m : {BudgetMethod::Greedy, BudgetMethod::Knapsack, BudgetMethod::WeightError}) {
    const auto path = allocation_path(g, m, 48, lo - 1);
    ASSERT_EQ(path.size(), 1u) << method_name(m);
    for (int r : path.front().rung) EXPECT_EQ(r, 0);
  }
}
