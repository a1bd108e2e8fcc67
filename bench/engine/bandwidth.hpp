// bandwidth.hpp: the memory-bandwidth baselines the engine benchmarks divide
// by (bench_engine, bench_decode_formats): a parallel memcpy and a parallel
// read stream over a buffer far larger than the caches, best of `reps`.
#pragma once

#include "core/runtime.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

namespace xquant::bench {

inline double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Best of `reps` parallel memcpy passes over `bytes` bytes; returns bytes copied/s.
inline double copy_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    const uint64_t chunk = 1 << 20;
    pool.parallel_for((bytes + chunk - 1) / chunk, 1, [&](uint64_t b, uint64_t e) {
      size_t lo = b * chunk, hi = std::min<size_t>(bytes, e * chunk);
      std::memcpy(dst.data() + lo, src.data() + lo, hi - lo);
    });
    best = std::min(best, seconds_between(t0, std::chrono::steady_clock::now()));
  }
  volatile char sink = dst[bytes / 2];
  (void)sink;
  return static_cast<double>(bytes) / best;
}

// Best of `reps` parallel read passes (integer sums, vectorizable); bytes read/s.
inline double read_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
  std::vector<uint64_t> buf(bytes / 8, 3);
  double best = 1e30;
  std::atomic<uint64_t> total{0};
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    const uint64_t chunk = 1 << 17;  // 1 MiB of uint64
    pool.parallel_for((buf.size() + chunk - 1) / chunk, 1, [&](uint64_t b, uint64_t e) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      size_t lo = b * chunk, hi = std::min<size_t>(buf.size(), e * chunk), i = lo;
      for (; i + 4 <= hi; i += 4) s0 += buf[i], s1 += buf[i + 1], s2 += buf[i + 2], s3 += buf[i + 3];
      for (; i < hi; ++i) s0 += buf[i];
      total += s0 + s1 + s2 + s3;
    });
    best = std::min(best, seconds_between(t0, std::chrono::steady_clock::now()));
  }
  if (total.load() == 1) std::printf("?");  // keeps the sums alive
  return static_cast<double>(bytes) / best;
}

}  // namespace xquant::bench
