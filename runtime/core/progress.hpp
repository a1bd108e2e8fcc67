// progress.hpp: progress of long steps on stderr.
//
// On a terminal: one line with a bar, the rate and the ETA, redrawn in place
// at most ~10 times a second; a finished step's line stays when it took a
// second or more, shorter ones are erased. Otherwise (CI logs): a plain line every 10% so
// logs stay short, none for a step shorter than a second (with -v, those
// too). Silent below info level (-q). The wording is progress_format.hpp's.
//
// Every long loop reports here, so this is also where a Ctrl-C is noticed:
// report() throws Error(XQ_ERR_CANCELLED) once a stop was requested
// (cancel.hpp), quiet or not.
#pragma once

#include <cstdint>
#include <string>

namespace xquant {

class Progress {
 public:
  // Reports `done` of `total` `unit`s ("layers", "tensors", "tokens") for
  // `task` (total 0 = unknown). A new task, or `done` going back, restarts
  // the rate's clock.
  static void report(const std::string& task, uint64_t done, uint64_t total, const std::string& unit = "");
};

}  // namespace xquant
