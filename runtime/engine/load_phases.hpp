// load_phases.hpp: where the seconds of opening a model go. Each mark ends
// one phase (process start -> runtime -> checkpoint open -> provider ->
// embedding -> layers -> lm_head -> upload -> tokenizer -> first token) and
// logs "load phase '<name>': <seconds> s (at <seconds> s), resident <MB> MB
// (peak <MB> MB)", the time since the previous mark (the first: since the
// process started) and since the process started, then the process's
// resident memory now and its peak so far (Linux; -1 where unreadable), so
// a load's memory can be placed phase by phase. At info level when the
// environment variable XQUANT_LOAD_PHASES=1 (bench/engine/gpu_load_time.sh
// reads those lines), else at debug.
#pragma once

namespace xquant {

void load_phase(const char* name);

// Seconds since this process started (Linux: /proc/self/stat's start time,
// 10 ms ticks; the first call's steady clock elsewhere).
double seconds_since_process_start();

}  // namespace xquant
