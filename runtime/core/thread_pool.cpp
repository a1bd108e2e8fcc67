#include "core/thread_pool.hpp"

#include <algorithm>

namespace xquant {

namespace {
thread_local bool t_in_pool = false;
}

ThreadPool::ThreadPool(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
  t_in_pool = true;
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || (generation_ != seen && next_ < n_); });
    if (stop_) return;
    seen = generation_;
    while (next_ < n_) {
      uint64_t b = next_;
      uint64_t e = std::min(n_, b + chunk_);
      next_ = e;
      const auto* job = job_;
      lock.unlock();
      (*job)(b, e);
      lock.lock();
      if (--chunks_left_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(uint64_t n, uint64_t grain, const std::function<void(uint64_t, uint64_t)>& fn) {
  if (n == 0) return;
  grain = std::max<uint64_t>(grain, 1);
  if (workers_.empty() || t_in_pool || n <= grain) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mutex_);
  uint64_t parts = std::min<uint64_t>(size() * 4, (n + grain - 1) / grain);
  uint64_t chunk = (n + parts - 1) / parts;
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &fn;
  n_ = n;
  chunk_ = chunk;
  next_ = 0;
  chunks_left_ = (n + chunk - 1) / chunk;
  ++generation_;
  wake_.notify_all();
  // The caller works too.
  t_in_pool = true;
  while (next_ < n_) {
    uint64_t b = next_;
    uint64_t e = std::min(n_, b + chunk_);
    next_ = e;
    lock.unlock();
    fn(b, e);
    lock.lock();
    --chunks_left_;
  }
  t_in_pool = false;
  done_.wait(lock, [&] { return chunks_left_ == 0; });
  job_ = nullptr;
  n_ = 0;
}

}  // namespace xquant
