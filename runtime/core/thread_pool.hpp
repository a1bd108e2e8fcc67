// thread_pool.hpp: the runtime's one pool of worker threads.
//
// parallel_for splits [0, n) into contiguous chunks; the calling thread
// works too. A parallel_for issued from inside a worker runs inline, so
// nested use (a plugin's kernel inside an engine op) cannot deadlock.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace xquant {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads);  // 0 = hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }
  void parallel_for(uint64_t n, uint64_t grain, const std::function<void(uint64_t, uint64_t)>& fn);

 private:
  void worker_loop();
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(uint64_t, uint64_t)>* job_ = nullptr;
  uint64_t n_ = 0, chunk_ = 0, next_ = 0, chunks_left_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::mutex submit_mutex_;  // one parallel_for at a time from outside
};

}  // namespace xquant
