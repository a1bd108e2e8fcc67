// test_thread_pool.cpp: every index is visited exactly once, nested calls
// run inline instead of deadlocking, repeated jobs reuse the workers, and
// the spin-then-park counters say when a job needed a wake-up syscall.
#include "core/error.hpp"
#include "core/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
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

// With a spin budget far longer than the gap between jobs, workers poll for
// the next job instead of parking: back-to-back jobs need no wake-up
// syscall at all.
TEST(ThreadPool, SpinningWorkersNeedNoWakeups) {
  ThreadPool pool(3, /*spin_us=*/1000000);
  for (int j = 0; j < 500; ++j) {
    std::atomic<uint64_t> s{0};
    pool.parallel_for(64, 1, [&](uint64_t b, uint64_t e) { s += e - b; });
    ASSERT_EQ(s.load(), 64u);
  }
  const ThreadPoolStats st = pool.stats();
  EXPECT_EQ(st.jobs, 500u);
  EXPECT_EQ(st.inline_jobs, 0u);
  EXPECT_EQ(st.parks, 0u);
  EXPECT_EQ(st.wakeups, 0u);
}

// Without spinning, a worker parks as soon as it finds no job; a job
// submitted while it sleeps counts as one wake-up. Each round waits until the
// worker has parked (its park is counted under the pool's lock, before it
// sleeps), so the count does not depend on how the threads are scheduled.
TEST(ThreadPool, ParkedWorkersAreWokenAndCounted) {
  ThreadPool pool(2, /*spin_us=*/0);
  uint64_t parks = 0;
  for (int j = 0; j < 20; ++j) {
    for (int waited_ms = 0; pool.stats().parks == parks; ++waited_ms) {
      ASSERT_LT(waited_ms, 60000) << "the worker never parked";
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    parks = pool.stats().parks;
    std::atomic<uint64_t> s{0};
    pool.parallel_for(64, 1, [&](uint64_t b, uint64_t e) { s += e - b; });
    ASSERT_EQ(s.load(), 64u);
    ASSERT_EQ(pool.stats().wakeups, static_cast<uint64_t>(j + 1));
  }
  EXPECT_EQ(pool.stats().jobs, 20u);
}

TEST(ThreadPool, SmallAndNestedJobsRunInlineAndAreCounted) {
  ThreadPool pool(2, 0);
  pool.parallel_for(4, 8, [](uint64_t, uint64_t) {});
  EXPECT_EQ(pool.stats().inline_jobs, 1u);
  EXPECT_EQ(pool.stats().jobs, 0u);
}

TEST(ThreadPool, BadSpinBudgetInTheEnvironmentIsRefused) {
  ::setenv("XQUANT_POOL_SPIN_US", "fast", 1);
  try {
    ThreadPool pool(2);
    ::unsetenv("XQUANT_POOL_SPIN_US");
    FAIL() << "a non-numeric XQUANT_POOL_SPIN_US was accepted";
  } catch (const Error& e) {
    ::unsetenv("XQUANT_POOL_SPIN_US");
    EXPECT_NE(std::string(e.what()).find("XQUANT_POOL_SPIN_US"), std::string::npos) << e.what();
  }
  ::setenv("XQUANT_POOL_SPIN_US", "50", 1);
  ThreadPool pool(2);
  ::unsetenv("XQUANT_POOL_SPIN_US");
  EXPECT_EQ(pool.spin_us(), 50);
}
