// test_thread_pool.cpp: every index is visited exactly once, nested calls
// run inline instead of deadlocking, and repeated jobs reuse the workers.
#include "core/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

using namespace xquant;

TEST(ThreadPool, VisitsEveryIndexOnce) {
  ThreadPool pool(4);
  for (uint64_t n : {1ull, 7ull, 1000ull, 100003ull}) {
    std::vector<std::atomic<int>> hits(n);
    pool.parallel_for(n, 3, [&](uint64_t b, uint64_t e) {
      for (uint64_t i = b; i < e; ++i) hits[i]++;
    });
    for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(3);
  std::atomic<uint64_t> total{0};
  pool.parallel_for(16, 1, [&](uint64_t b, uint64_t e) {
    for (uint64_t i = b; i < e; ++i)
      pool.parallel_for(10, 1, [&](uint64_t bb, uint64_t ee) { total += ee - bb; });
  });
  EXPECT_EQ(total.load(), 160u);
}

TEST(ThreadPool, ManyJobsInARow) {
  ThreadPool pool(2);
  uint64_t sum = 0;
  for (int j = 0; j < 2000; ++j) {
    std::atomic<uint64_t> s{0};
    pool.parallel_for(64, 1, [&](uint64_t b, uint64_t e) {
      for (uint64_t i = b; i < e; ++i) s += i;
    });
    sum += s.load();
  }
  EXPECT_EQ(sum, 2000u * (63u * 64u / 2u));
}
