// budget.cpp: see budget.hpp.
#include "decide/budget.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace xquant::decide {

namespace {

void check(const std::vector<RungCosts>& groups) {
  for (size_t i = 0; i < groups.size(); ++i)
    if (groups[i].bytes.empty() || groups[i].bytes.size() != groups[i].damage.size())
      fail(XQ_ERR_INTERNAL, "fallback: group #{} has {} byte and {} damage entries", i, groups[i].bytes.size(),
           groups[i].damage.size());
}

Allocation at_rung_zero(const std::vector<RungCosts>& groups) {
  Allocation a;
  a.rung.assign(groups.size(), 0);
  for (const auto& g : groups) {
    a.bytes += g.bytes[0];
    a.predicted += g.damage[0];
  }
  return a;
}

void set_rung(Allocation& a, const std::vector<RungCosts>& groups, size_t i, int r) {
  a.bytes += groups[i].bytes[static_cast<size_t>(r)] - groups[i].bytes[static_cast<size_t>(a.rung[i])];
  a.predicted += groups[i].damage[static_cast<size_t>(r)] - groups[i].damage[static_cast<size_t>(a.rung[i])];
  a.rung[i] = r;
}

uint64_t top_bytes(const std::vector<RungCosts>& groups) {
  uint64_t b = 0;
  for (const auto& g : groups) b += g.bytes.back();
  return b;
}

// Repeatedly the one-rung move with the most damage removed per extra byte.
std::vector<Allocation> greedy_path(const std::vector<RungCosts>& groups) {
  std::vector<Allocation> path{at_rung_zero(groups)};
  for (;;) {
    Allocation a = path.back();
    int best = -1;
    double best_score = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < groups.size(); ++i) {
      const size_t k = static_cast<size_t>(a.rung[i]);
      if (k + 1 >= groups[i].bytes.size()) continue;
      const double gain = groups[i].damage[k] - groups[i].damage[k + 1];
      const double cost = static_cast<double>(groups[i].bytes[k + 1]) - static_cast<double>(groups[i].bytes[k]);
      const double score = gain / std::max(cost, 1.0);
      if (score > best_score) {
        best_score = score;
        best = static_cast<int>(i);
      }
    }
    if (best < 0) return path;
    set_rung(a, groups, static_cast<size_t>(best), a.rung[static_cast<size_t>(best)] + 1);
    path.push_back(std::move(a));
  }
}

// Largest relative weight error first, straight to the top of the ladder.
std::vector<Allocation> weight_error_path(const std::vector<RungCosts>& groups) {
  std::vector<size_t> order(groups.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return groups[a].weight_error > groups[b].weight_error; });
  std::vector<Allocation> path{at_rung_zero(groups)};
  for (size_t i : order) {
    Allocation a = path.back();
    set_rung(a, groups, i, static_cast<int>(groups[i].bytes.size()) - 1);
    path.push_back(std::move(a));
  }
  return path;
}

// Solutions at budgets spaced geometrically in the extra bytes above
// all-rung-0 (the target is usually met after a small fraction of the
// groups moved), duplicates and dominated ones dropped.
std::vector<Allocation> knapsack_path(const std::vector<RungCosts>& groups, int points, uint64_t top) {
  const Allocation zero = at_rung_zero(groups);
  std::vector<Allocation> path{zero};
  if (top <= zero.bytes) return path;
  double smallest = static_cast<double>(top - zero.bytes);
  for (const auto& g : groups)
    for (size_t r = 1; r < g.bytes.size(); ++r)
      if (g.bytes[r] > g.bytes[0]) smallest = std::min(smallest, static_cast<double>(g.bytes[r] - g.bytes[0]));
  const double range = static_cast<double>(top - zero.bytes) / smallest;
  for (int k = 0; k < points; ++k) {
    const double extra = smallest * std::pow(range, points > 1 ? static_cast<double>(k) / (points - 1) : 1.0);
    const uint64_t budget = k + 1 == points ? top : zero.bytes + static_cast<uint64_t>(extra);
    Allocation a = knapsack(groups, budget);
    if (a.rung == path.back().rung) continue;
    if (a.predicted >= path.back().predicted && a.bytes >= path.back().bytes) continue;  // dominated
    path.push_back(std::move(a));
  }
  // The top of the ladder itself (the grid's rounding up can keep it from
  // fitting the last budget exactly), unless a byte limit lies below it.
  if (top == top_bytes(groups) && path.back().bytes < top) {
    Allocation a = path.back();
    for (size_t i = 0; i < groups.size(); ++i) set_rung(a, groups, i, static_cast<int>(groups[i].bytes.size()) - 1);
    path.push_back(std::move(a));
  }
  return path;
}

}  // namespace

std::string method_name(BudgetMethod m) {
  switch (m) {
    case BudgetMethod::Greedy: return "greedy";
    case BudgetMethod::Knapsack: return "knapsack";
    case BudgetMethod::WeightError: return "weight-error";
  }
  return "?";
}

Allocation knapsack(const std::vector<RungCosts>& groups, uint64_t budget, int64_t cells) {
  check(groups);
  Allocation zero = at_rung_zero(groups);
  if (budget <= zero.bytes || groups.empty() || cells < 1) return zero;
  // Exact when the extra bytes of every choice are multiples of a unit that
  // keeps the grid within `cells` (their gcd); otherwise rounded up.
  uint64_t g = 0;
  for (const auto& x : groups)
    for (uint64_t b : x.bytes)
      if (b > x.bytes[0]) g = std::gcd(g, b - x.bytes[0]);
  const uint64_t extra = budget - zero.bytes;
  double unit = static_cast<double>(std::max<uint64_t>(g, 1));
  int64_t steps = static_cast<int64_t>(extra / std::max<uint64_t>(g, 1));
  if (steps > cells) {
    unit = static_cast<double>(extra) / cells;
    steps = cells;
  }
  const auto n_cells = static_cast<size_t>(steps) + 1;
  constexpr double kNone = std::numeric_limits<double>::infinity();
  // best[j]: least damage of the groups so far using at most j cells.
  std::vector<double> best(n_cells, 0.0), next(n_cells);
  std::vector<std::vector<int8_t>> choice(groups.size(), std::vector<int8_t>(n_cells, 0));
  for (size_t i = 0; i < groups.size(); ++i) {
    const RungCosts& g = groups[i];
    std::fill(next.begin(), next.end(), kNone);
    for (size_t r = 0; r < g.bytes.size(); ++r) {
      const double extra = static_cast<double>(g.bytes[r]) - static_cast<double>(g.bytes[0]);
      const auto c = static_cast<size_t>(std::max(0.0, std::ceil(extra / unit - 1e-9)));  // rounded up: always fits
      for (size_t j = c; j < n_cells; ++j)
        if (best[j - c] + g.damage[r] < next[j]) {
          next[j] = best[j - c] + g.damage[r];
          choice[i][j] = static_cast<int8_t>(r);
        }
    }
    best.swap(next);
  }
  Allocation a = zero;
  size_t j = n_cells - 1;
  for (size_t i = groups.size(); i-- > 0;) {
    const int r = choice[i][j];
    const double extra = static_cast<double>(groups[i].bytes[static_cast<size_t>(r)]) - static_cast<double>(groups[i].bytes[0]);
    j -= static_cast<size_t>(std::max(0.0, std::ceil(extra / unit - 1e-9)));
    set_rung(a, groups, i, r);
  }
  return a;
}

std::vector<Allocation> allocation_path(const std::vector<RungCosts>& groups, BudgetMethod method, int points,
                                        uint64_t max_bytes) {
  check(groups);
  const uint64_t cap = max_bytes > 0 ? std::min(max_bytes, top_bytes(groups)) : top_bytes(groups);
  std::vector<Allocation> path;
  switch (method) {
    case BudgetMethod::Greedy: path = greedy_path(groups); break;
    case BudgetMethod::Knapsack: path = knapsack_path(groups, points, cap); break;
    case BudgetMethod::WeightError: path = weight_error_path(groups); break;
  }
  // Every path rises in bytes: keep its beginning within the limit (and
  // all-rung-0 always, the start).
  while (path.size() > 1 && path.back().bytes > cap) path.pop_back();
  return path;
}

}  // namespace xquant::decide
