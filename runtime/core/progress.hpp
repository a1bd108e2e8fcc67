// progress.hpp: progress of long steps on stderr.
//
// On a terminal: one line redrawn in place at most ~10 times a second.
// Otherwise (CI logs): a line every 10% so logs stay short. Silent below
// info level (-q).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace xquant {

class Progress {
 public:
  // Reports `done` of `total` for `task` (total 0 = unknown).
  static void report(const std::string& task, uint64_t done, uint64_t total);
};

}  // namespace xquant
