// statistics_accumulator.cpp: see statistics_accumulator.hpp.
#include "calibrate/statistics_accumulator.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace xquant {

void StatisticsAccumulator::init(InputStats& s, int64_t cols, uint32_t needs_bits, int64_t max_rows, uint64_t seed) {
  st = &s;
  needs = needs_bits;
  s.cols = cols;
  if (needs & XQ_NEED_ABSMAX) s.absmax.assign(static_cast<size_t>(cols), 0.0f);
  if (needs & XQ_NEED_MEAN_ABS) sum_abs.assign(static_cast<size_t>(cols), 0.0);
  if (needs & XQ_NEED_SUM_SQ) sum_sq.assign(static_cast<size_t>(cols), 0.0);
  if (needs & XQ_NEED_HESSIAN) s.hessian.assign(static_cast<size_t>(cols * cols), 0.0f);
  cap = (needs & XQ_NEED_SAMPLES) ? max_rows : 0;
  rng.seed(seed);
}

void StatisticsAccumulator::add(ThreadPool& pool, const float* x, int64_t rows, int64_t cols) {
  st->tokens += static_cast<uint64_t>(rows);
  if (needs & (XQ_NEED_ABSMAX | XQ_NEED_MEAN_ABS | XQ_NEED_SUM_SQ)) {
    pool.parallel_for(static_cast<uint64_t>(cols), 64, [&](uint64_t b, uint64_t e) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        for (uint64_t c = b; c < e; ++c) {
          float v = xr[c], a = std::fabs(v);
          if (!st->absmax.empty()) st->absmax[c] = std::max(st->absmax[c], a);
          if (!sum_abs.empty()) sum_abs[c] += a;
          if (!sum_sq.empty()) sum_sq[c] += static_cast<double>(v) * v;
        }
      }
    });
  }
  if (needs & XQ_NEED_HESSIAN)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(cols), static_cast<int>(cols),
                static_cast<int>(rows), 1.0f, x, static_cast<int>(cols), x, static_cast<int>(cols), 1.0f,
                st->hessian.data(), static_cast<int>(cols));
  if (cap > 0) {
    // Reservoir sampling (Algorithm R): a uniform sample of all rows seen.
    for (int64_t r = 0; r < rows; ++r, ++seen) {
      int64_t slot = -1;
      if (st->n_samples < cap) {
        slot = st->n_samples++;
        st->samples.resize(static_cast<size_t>(st->n_samples * cols));
      } else {
        std::uniform_int_distribution<uint64_t> d(0, seen);
        uint64_t j = d(rng);
        if (j < static_cast<uint64_t>(cap)) slot = static_cast<int64_t>(j);
      }
      if (slot >= 0)
        std::memcpy(st->samples.data() + slot * cols, x + r * cols, static_cast<size_t>(cols) * sizeof(float));
    }
  }
}

void StatisticsAccumulator::finish() {
  if (!sum_abs.empty()) {
    st->mean_abs.resize(sum_abs.size());
    for (size_t c = 0; c < sum_abs.size(); ++c)
      st->mean_abs[c] = st->tokens ? static_cast<float>(sum_abs[c] / static_cast<double>(st->tokens)) : 0.0f;
  }
  if (!sum_sq.empty()) {
    st->sum_sq.resize(sum_sq.size());
    for (size_t c = 0; c < sum_sq.size(); ++c) st->sum_sq[c] = static_cast<float>(sum_sq[c]);
  }
}

uint64_t held_bytes(const InputStats& s) {
  const size_t floats = s.absmax.size() + s.mean_abs.size() + s.sum_sq.size() + s.hessian.size() + s.samples.size();
  return static_cast<uint64_t>(floats) * sizeof(float);
}

}  // namespace xquant
