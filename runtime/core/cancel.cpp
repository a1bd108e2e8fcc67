#include "core/cancel.hpp"

#include "core/error.hpp"

#include <atomic>
#include <csignal>

namespace xquant {

namespace {

// Lock-free atomics are async-signal-safe; the handler touches nothing else.
std::atomic<int> g_signal{0};
std::atomic<bool> g_requested{false};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

extern "C" void on_cancel_signal(int signo) {
  g_signal.store(signo, std::memory_order_relaxed);
  g_requested.store(true, std::memory_order_release);
}

}  // namespace

void install_cancel_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_cancel_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // the second signal takes the default action (terminate)
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool cancel_requested() noexcept { return g_requested.load(std::memory_order_acquire); }

int cancel_signal() noexcept { return g_signal.load(std::memory_order_relaxed); }

void request_cancel() noexcept { g_requested.store(true, std::memory_order_release); }

void throw_if_cancelled() {
  if (cancel_requested()) throw Error(XQ_ERR_CANCELLED, "interrupted");
}

}  // namespace xquant
