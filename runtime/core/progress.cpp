#include "core/progress.hpp"

#include "core/cancel.hpp"
#include "core/log.hpp"
#include "core/progress_format.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>

namespace xquant {

namespace {

using Clock = std::chrono::steady_clock;
// Steps shorter than this leave no line: erased on a terminal, never
// written to a log.
constexpr double kQuietFor = 1.0;  // seconds

// Each task keeps its own clock: the runners nest tasks (a plugin's "gptq"
// blocks inside the host's "calibration" layers), and switching between them
// must not reset the outer task's rate.
struct TaskClock {
  uint64_t last_done = 0;
  uint64_t done_at_start = 0;
  Clock::time_point start{};
  int last_decile = -1;
};

struct Tracker {
  std::mutex mutex;
  std::map<std::string, TaskClock> tasks;
  Clock::time_point last_draw{};
};

Tracker& tracker() {
  static Tracker t;
  return t;
}

// The task's clock, restarted when the task is new or its count went back.
TaskClock& clock_of(Tracker& t, const std::string& task, uint64_t done, Clock::time_point now) {
  auto [it, added] = t.tasks.try_emplace(task);
  TaskClock& c = it->second;
  if (added || done < c.last_done) c = TaskClock{done, done, now, -1};
  c.last_done = done;
  return c;
}

void draw_on_terminal(Tracker& t, const ProgressState& s, bool finished, Clock::time_point now) {
  if (!finished && now - t.last_draw < std::chrono::milliseconds(100)) return;
  t.last_draw = now;
  std::fprintf(stderr, "\r\033[K%s", render_progress_bar_line(s).c_str());
  // A finished step keeps its line when it took long enough to matter; a
  // short one (a plugin's per-Linear step) is erased so the screen stays calm.
  if (finished) std::fputs(s.elapsed >= kQuietFor ? "\n" : "\r\033[K", stderr);
  std::fflush(stderr);
}

void log_plain_line(TaskClock& c, const ProgressState& s) {
  // -v: every step's lines, short ones too.
  const double quiet_for = log_level() <= XQ_LOG_DEBUG ? 0.0 : kQuietFor;
  const int decile = plain_line_decile(s, c.last_decile, quiet_for);
  if (decile < 0) return;
  c.last_decile = decile;
  logger().info("{}", render_progress_plain_line(s));
}

}  // namespace

void Progress::report(const std::string& task, uint64_t done, uint64_t total, const std::string& unit) {
  throw_if_cancelled();
  if (log_level() > XQ_LOG_INFO) return;
  static const bool tty = isatty(fileno(stderr)) != 0;
  Tracker& t = tracker();
  std::lock_guard<std::mutex> lock(t.mutex);
  auto now = Clock::now();
  TaskClock& c = clock_of(t, task, done, now);
  ProgressState s;
  s.task = task;
  s.unit = unit;
  s.done = done;
  s.total = total;
  s.elapsed = std::chrono::duration<double>(now - c.start).count();
  s.done_at_start = c.done_at_start;
  bool finished = total != 0 && done >= total;
  if (tty) draw_on_terminal(t, s, finished, now);
  else log_plain_line(c, s);
}

}  // namespace xquant
