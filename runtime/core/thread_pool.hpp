// thread_pool.hpp: the runtime's one pool of worker threads.
//
// parallel_for splits [0, n) into contiguous chunks; the calling thread
// works too. A parallel_for issued from inside a worker runs inline, so
// nested use (a plugin's kernel inside an engine op) cannot deadlock.
//
// Spin, then park. A decode step is hundreds of short jobs (a GEMV each,
// tens of microseconds) separated by single-row ops that run inline on the
// caller; waking a parked worker through a condition variable (a futex
// syscall, then the scheduler) costs about as much as the job. So after each
// job a worker polls for the next one for a bounded time before it parks,
// and the caller spins briefly for the last chunks before it sleeps on the
// completion. ggml's thread pool does the same (ggml-cpu.c,
// ggml_graph_compute_thread_sync / ggml_graph_compute_poll_for_work). The
// spin budget comes from XQUANT_POOL_SPIN_US (microseconds, default 200; 0
// parks at once, the pool's old behaviour), so a box shared with other work
// can turn it off.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace xquant {

// What the pool has done since it started (counters, never timings: tests
// and benchmarks compare them per token).
struct ThreadPoolStats {
  uint64_t jobs = 0;         // parallel_for calls handed to the workers
  uint64_t inline_jobs = 0;  // calls run entirely on the caller (small, nested or no workers)
  uint64_t parks = 0;        // times a worker found no work within its spin and slept
  uint64_t wakeups = 0;      // jobs whose submission had to wake parked workers (a syscall)
};

class ThreadPool {
 public:
  // threads: 0 = hardware concurrency. spin_us < 0: from XQUANT_POOL_SPIN_US
  // (an invalid value throws an Error naming it).
  explicit ThreadPool(unsigned threads, int64_t spin_us = -1);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }
  int64_t spin_us() const { return spin_us_; }
  void parallel_for(uint64_t n, uint64_t grain, const std::function<void(uint64_t, uint64_t)>& fn);
  ThreadPoolStats stats() const;

 private:
  void worker_loop();
  // Returns once generation_ differs from `seen` or the pool stops: polls
  // for up to spin_us_, then parks on wake_.
  void wait_for_job(uint64_t seen);
  // Runs chunks of the current job until none is left (mutex_ held on entry
  // and on return).
  void run_chunks(std::unique_lock<std::mutex>& lock);
  void wait_for_completion();

  std::vector<std::thread> workers_;
  int64_t spin_us_ = 0;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(uint64_t, uint64_t)>* job_ = nullptr;
  uint64_t n_ = 0, chunk_ = 0, next_ = 0;
  uint64_t generation_ = 0;                      // under mutex_
  std::atomic<uint64_t> published_generation_{0};  // generation_, readable without the lock
  std::atomic<uint64_t> chunks_left_{0};
  std::atomic<bool> stop_{false};
  unsigned parked_ = 0;  // workers asleep on wake_ (under mutex_)
  std::atomic<uint64_t> jobs_{0}, inline_jobs_{0}, parks_{0}, wakeups_{0};
  std::mutex submit_mutex_;  // one parallel_for at a time from outside
};

}  // namespace xquant
