#include "core/progress_format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace xquant {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  auto s = static_cast<uint64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string format_rate(double per_second, const std::string& unit) {
  const std::string per = (unit.empty() ? std::string() : " " + unit) + "/s";
  if (!std::isfinite(per_second) || per_second < 0) return "--" + per;
  const char* suffix = "";
  if (per_second >= 1e6) {
    per_second /= 1e6;
    suffix = "M";
  } else if (per_second >= 1e3) {
    per_second /= 1e3;
    suffix = "k";
  }
  // Three significant digits whatever the magnitude (at most 4 decimals).
  int magnitude = per_second > 0 ? static_cast<int>(std::floor(std::log10(per_second))) : 0;
  int decimals = std::clamp(2 - magnitude, 0, 4);
  return fmt::format("{:.{}f}{}{}", per_second, decimals, suffix, per);
}

double progress_rate(const ProgressState& s) {
  if (s.elapsed <= 0 || s.done <= s.done_at_start) return -1;
  return static_cast<double>(s.done - s.done_at_start) / s.elapsed;
}

double progress_eta(const ProgressState& s) {
  if (s.total == 0) return -1;
  if (s.done >= s.total) return 0;
  double rate = progress_rate(s);
  if (rate <= 0) return -1;
  return static_cast<double>(s.total - s.done) / rate;
}

std::string progress_bar(uint64_t done, uint64_t total, int width) {
  width = std::max(width, 1);
  int filled = total == 0 ? 0 : static_cast<int>(std::min<uint64_t>(done, total) * static_cast<uint64_t>(width) / total);
  return "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.') + "]";
}

namespace {

std::string count_text(const ProgressState& s) {
  std::string unit = s.unit.empty() ? "" : " " + s.unit;
  if (s.total == 0) return fmt::format("{}{}", s.done, unit);
  return fmt::format("{}/{}{}", s.done, s.total, unit);
}

int percent(const ProgressState& s) {
  return static_cast<int>(100 * std::min(s.done, s.total) / s.total);
}

}  // namespace

std::string render_progress_bar_line(const ProgressState& s, int bar_width) {
  double rate = progress_rate(s);
  std::string rate_text = rate < 0 ? "" : "  " + format_rate(rate, s.unit);
  if (s.total == 0) return fmt::format("{}  {}{}", s.task, count_text(s), rate_text);
  std::string eta = s.done >= s.total ? fmt::format("  in {}", format_duration(s.elapsed))
                                      : fmt::format("  ETA {}", format_duration(progress_eta(s)));
  return fmt::format("{} {}  {}  {:>3}%{}{}", s.task, progress_bar(s.done, s.total, bar_width), count_text(s),
                     percent(s), rate_text, eta);
}

int plain_line_decile(const ProgressState& s, int last_decile, double quiet_for) {
  if (s.total == 0 || s.elapsed < quiet_for) return -1;
  const int decile = static_cast<int>(10 * std::min(s.done, s.total) / s.total);
  return decile == last_decile ? -1 : decile;
}

std::string render_progress_plain_line(const ProgressState& s) {
  double rate = progress_rate(s);
  std::string rate_text = rate < 0 ? "" : ", " + format_rate(rate, s.unit);
  if (s.total == 0) return fmt::format("{}: {}{}", s.task, count_text(s), rate_text);
  std::string eta = s.done >= s.total ? fmt::format(", in {}", format_duration(s.elapsed))
                                      : fmt::format(", ETA {}", format_duration(progress_eta(s)));
  return fmt::format("{}: {} ({}%){}{}", s.task, count_text(s), percent(s), rate_text, eta);
}

}  // namespace xquant
