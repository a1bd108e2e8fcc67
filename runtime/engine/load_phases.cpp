// load_phases.cpp: the phase marks of a model load (load_phases.hpp).
#include "engine/load_phases.hpp"

#include "core/log.hpp"

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

namespace xquant {

namespace {

// Seconds between boot and this process's start (field 22 of proc(5)'s
// /proc/self/stat, in clock ticks); negative when unreadable.
double process_start_since_boot() {
  std::ifstream in("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = s.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return -1;
  std::istringstream fields(s.substr(paren + 2));
  std::string f;
  // Fields from 3 (state) on; starttime is field 22.
  for (int i = 3; i <= 22 && (fields >> f); ++i)
    if (i == 22) return std::strtod(f.c_str(), nullptr) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return -1;
}

double boot_seconds_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// proc(5)'s /proc/self/status "VmRSS" and "VmHWM" (resident now and at
// its peak) in MB; negative when unreadable.
void resident_mb(double& now, double& peak) {
  now = peak = -1;
  std::ifstream in("/proc/self/status");
  std::string key;
  double kb = 0;
  while (in >> key) {
    if (key == "VmRSS:" && in >> kb) now = kb / 1024.0;
    else if (key == "VmHWM:" && in >> kb) peak = kb / 1024.0;
  }
}

bool phases_at_info() {
  const char* e = std::getenv("XQUANT_LOAD_PHASES");
  return e && std::strcmp(e, "0") != 0 && *e;
}

}  // namespace

double seconds_since_process_start() {
  static const double start = process_start_since_boot();
  static const auto first_call = std::chrono::steady_clock::now();
  if (start >= 0) return boot_seconds_now() - start;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - first_call).count();
}

void load_phase(const char* name) {
  static std::mutex m;
  static double last = 0;  // the process start
  std::lock_guard<std::mutex> lock(m);
  const double now = seconds_since_process_start();
  const auto level = phases_at_info() ? spdlog::level::info : spdlog::level::debug;
  if (!logger().should_log(level)) {  // no /proc read for a line nobody prints
    last = now;
    return;
  }
  double rss = -1, hwm = -1;
  resident_mb(rss, hwm);
  logger().log(level, "load phase '{}': {:.3f} s (at {:.3f} s), resident {:.1f} MB (peak {:.1f} MB)", name, now - last,
               now, rss, hwm);
  last = now;
}

}  // namespace xquant
