#include "core/progress.hpp"

#include "core/log.hpp"

#include <unistd.h>

#include <cstdio>

namespace xquant {

void Progress::report(const std::string& task, uint64_t done, uint64_t total) {
  if (log_level() > XQ_LOG_INFO) return;
  static std::mutex mutex;
  static std::string last_task;
  static int last_decile = -1;
  static auto last_draw = std::chrono::steady_clock::time_point{};
  static const bool tty = isatty(fileno(stderr)) != 0;
  std::lock_guard<std::mutex> lock(mutex);
  auto now = std::chrono::steady_clock::now();
  bool finished = total != 0 && done >= total;
  if (task != last_task) {
    last_task = task;
    last_decile = -1;
  }
  if (tty) {
    if (!finished && now - last_draw < std::chrono::milliseconds(100)) return;
    last_draw = now;
    if (total)
      std::fprintf(stderr, "\r\033[K%s: %llu/%llu (%.0f%%)", task.c_str(), (unsigned long long)done,
                   (unsigned long long)total, 100.0 * double(done) / double(total));
    else
      std::fprintf(stderr, "\r\033[K%s: %llu", task.c_str(), (unsigned long long)done);
    if (finished) std::fputc('\n', stderr);
    std::fflush(stderr);
    return;
  }
  if (!total) return;
  int decile = static_cast<int>(10 * done / total);
  if (decile == last_decile) return;
  last_decile = decile;
  logger().info("{}: {}/{} ({}%)", task, done, total, decile * 10);
}

}  // namespace xquant
