// progress_format.hpp: how a progress report reads, as pure functions of
// (task, done, total, unit, elapsed) so the wording is tested without a clock
// or a terminal. progress.cpp decides when to draw and where.
#pragma once

#include <cstdint>
#include <string>

namespace xquant {

struct ProgressState {
  std::string task;     // "calibration"
  std::string unit;     // "layers", "tensors", "tokens"; "" = plain counts
  uint64_t done = 0;
  uint64_t total = 0;   // 0 = unknown
  double elapsed = 0;   // seconds since the task's first report
  uint64_t done_at_start = 0;  // `done` at the first report (the rate counts from there)
};

// "7s", "3m05s", "2h04m"; "--" for a negative or non-finite value.
std::string format_duration(double seconds);
// Items per second with 3 significant digits: "12.3 layers/s", "0.250 tensors/s", "1.20k tokens/s"
// (at most 4 decimals).
std::string format_rate(double per_second, const std::string& unit);
// The rate since the first report; < 0 while it cannot be measured yet.
double progress_rate(const ProgressState& s);
// Seconds left at the current rate; < 0 when unknown.
double progress_eta(const ProgressState& s);
// "[#########...........]" with `width` cells inside the brackets.
std::string progress_bar(uint64_t done, uint64_t total, int width);
// A terminal line (no "\r", no newline):
//   "calibration [#####.....]  3/5 layers  60%  1.20 layers/s  ETA 2s"
std::string render_progress_bar_line(const ProgressState& s, int bar_width = 24);
// Logs (non-terminals) get a line at each new decile of a task: the decile
// due now, or -1 (none: unknown total, the same decile as the last line, or
// the task has run less than `quiet_for` seconds). So a short step, such as
// a plugin's per-group search run hundreds of times a layer, leaves no line,
// and a long one's lines start at the decile it has reached by then.
int plain_line_decile(const ProgressState& s, int last_decile, double quiet_for);
// A log line for non-terminals:
//   "calibration: 3/5 layers (60%), 1.20 layers/s, ETA 2s"
std::string render_progress_plain_line(const ProgressState& s);

}  // namespace xquant
