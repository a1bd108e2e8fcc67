// statistics_accumulator.hpp: accumulates one Linear group's input
// statistics (calibrator.hpp InputStats, the XQ_NEED_* bits) over input
// rows, and counts the bytes a set of statistics holds.
#pragma once

#include "calibrate/calibrator.hpp"
#include "core/thread_pool.hpp"

#include <cstdint>
#include <random>
#include <vector>

namespace xquant {

// Fills `st` from the rows given to add(); sums that run long are kept in
// double and written to `st` by finish().
struct StatisticsAccumulator {
  InputStats* st = nullptr;
  uint32_t needs = 0;
  std::vector<double> sum_abs, sum_sq;
  uint64_t seen = 0;  // rows offered to the reservoir
  std::mt19937_64 rng;
  int64_t cap = 0;

  // Sizes `s` for `cols` input columns; XQ_NEED_SAMPLES keeps a reservoir
  // of at most `max_rows` rows, drawn with `seed`.
  void init(InputStats& s, int64_t cols, uint32_t needs_bits, int64_t max_rows, uint64_t seed);
  // Adds `rows` input rows x[rows, cols].
  void add(ThreadPool& pool, const float* x, int64_t rows, int64_t cols);
  void finish();
};

// Bytes held by the vectors of `s` (what an accumulated group costs).
uint64_t held_bytes(const InputStats& s);

}  // namespace xquant
