// budget.hpp: which groups climb the fallback ladder for a given number of
// weight bytes. Three ways, each giving a path of allocations (one rung per
// group) in increasing bytes, which the fallback then evaluates end to end:
//
//   greedy     by damage removed per extra byte: repeatedly the one-rung move
//              with the largest (measured KLD at this rung - at the next) /
//              (extra bytes);
//   knapsack   exact over the (group, rung) choices on a byte grid: for a
//              budget, the allocation minimising the summed measured damage
//              (a multiple-choice knapsack solved by dynamic programming,
//              the discrete form of ModelOpt's auto_quantize LP,
//              modelopt/torch/quantization/algorithms.py); the path is its
//              solution at each of a series of budgets;
//   weight     the plain baseline: groups ranked by their relative weight
//              error ||W - W^||^2 / ||W||^2 (no data), moved to the top of the
//              ladder one by one, largest error first.
//
// Damage is additive here (each group's KLD measured with only that group
// quantized); the fallback measures what the sum misses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xquant::decide {

// Per group: bytes and measured damage at each rung of the ladder (rung 0
// the chosen candidate; damage 0 at the dense rung), and the weight error
// of rung 0 for the baseline.
struct RungCosts {
  std::vector<uint64_t> bytes;
  std::vector<double> damage;
  double weight_error = 0;
};

struct Allocation {
  std::vector<int> rung;  // per group
  uint64_t bytes = 0;
  double predicted = 0;   // summed damage
};

enum class BudgetMethod { Greedy, Knapsack, WeightError };
std::string method_name(BudgetMethod m);

// The allocation with the least summed damage within `budget` bytes: a
// dynamic programme over the extra bytes above all-rung-0, exact on the grid
// of their greatest common divisor when that grid has at most `cells` steps;
// otherwise on `cells` steps with each choice's bytes rounded up (the result
// still fits). Rung 0 everywhere when nothing fits.
Allocation knapsack(const std::vector<RungCosts>& groups, uint64_t budget, int64_t cells = int64_t(1) << 15);

// The path from all-rung-0 to the top of the ladder, increasing in bytes.
// Knapsack: the distinct solutions at `points` budgets spaced geometrically
// in the extra bytes. With max_bytes (0 = none) the path ends at the last
// allocation within it (the knapsack spreads its budgets up to it); when
// even all-rung-0 exceeds it the path is all-rung-0 alone (the caller
// refuses that budget).
std::vector<Allocation> allocation_path(const std::vector<RungCosts>& groups, BudgetMethod method, int points = 48,
                                        uint64_t max_bytes = 0);

}  // namespace xquant::decide
