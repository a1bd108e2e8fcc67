#include "core/thread_pool.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

namespace xquant {

namespace {

thread_local bool t_in_pool = false;

constexpr int64_t kDefaultSpinUs = 200;

int64_t spin_us_from_environment() {
  const char* e = std::getenv("XQUANT_POOL_SPIN_US");
  if (!e || !*e) return kDefaultSpinUs;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  if (*end != '\0' || v < 0 || v > 1000000)
    fail(XQ_ERR_INVALID_ARGUMENT, "XQUANT_POOL_SPIN_US must be a whole number of microseconds in [0, 1000000], got '{}'",
         e);
  return v;
}

// Tells the core we are polling (x86 PAUSE, Arm YIELD), so a spinning
// thread yields pipeline resources to its hyper-thread sibling.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `ready` until it returns true or `us` microseconds have passed;
// returns whether it became ready. The clock is read every 64 polls only.
template <class Ready>
bool spin_until(int64_t us, Ready&& ready) {
  if (us <= 0) return ready();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

}  // namespace

ThreadPool::ThreadPool(unsigned threads, int64_t spin_us) {
  spin_us_ = spin_us < 0 ? spin_us_from_environment() : spin_us;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPoolStats ThreadPool::stats() const {
  return {jobs_.load(), inline_jobs_.load(), parks_.load(), wakeups_.load()};
}

void ThreadPool::wait_for_job(uint64_t seen) {
  if (spin_until(spin_us_, [&] { return published_generation_.load(std::memory_order_acquire) != seen || stop_.load(); }))
    return;
  std::unique_lock<std::mutex> lock(mutex_);
  if (stop_ || generation_ != seen) return;
  ++parked_;
  parks_.fetch_add(1, std::memory_order_relaxed);
  wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
  --parked_;
}

void ThreadPool::run_chunks(std::unique_lock<std::mutex>& lock) {
  while (next_ < n_) {
    const uint64_t b = next_, e = std::min(n_, b + chunk_);
    next_ = e;
    const auto* job = job_;
    lock.unlock();
    (*job)(b, e);
    const bool last = chunks_left_.fetch_sub(1, std::memory_order_acq_rel) == 1;
    lock.lock();
    if (last) done_.notify_all();
  }
}

void ThreadPool::worker_loop() {
  t_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    wait_for_job(seen);
    std::unique_lock<std::mutex> lock(mutex_);
    if (stop_) return;
    seen = generation_;
    run_chunks(lock);
  }
}

void ThreadPool::wait_for_completion() {
  auto finished = [&] { return chunks_left_.load(std::memory_order_acquire) == 0; };
  if (spin_until(spin_us_, finished)) return;
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, finished);
}

void ThreadPool::parallel_for(uint64_t n, uint64_t grain, const std::function<void(uint64_t, uint64_t)>& fn) {
  if (n == 0) return;
  grain = std::max<uint64_t>(grain, 1);
  if (workers_.empty() || t_in_pool || n <= grain) {
    inline_jobs_.fetch_add(1, std::memory_order_relaxed);
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mutex_);
  const uint64_t parts = std::min<uint64_t>(size() * 4, (n + grain - 1) / grain);
  const uint64_t chunk = (n + parts - 1) / parts;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_ = 0;
    chunks_left_.store((n + chunk - 1) / chunk, std::memory_order_relaxed);
    ++generation_;
    published_generation_.store(generation_, std::memory_order_release);
    jobs_.fetch_add(1, std::memory_order_relaxed);
    // Spinning workers see published_generation_; only parked ones need the syscall.
    if (parked_ > 0) {
      wakeups_.fetch_add(1, std::memory_order_relaxed);
      wake_.notify_all();
    }
    t_in_pool = true;  // the caller works too
    run_chunks(lock);
    t_in_pool = false;
  }
  wait_for_completion();
  std::lock_guard<std::mutex> lock(mutex_);
  job_ = nullptr;
  n_ = 0;
}

}  // namespace xquant
