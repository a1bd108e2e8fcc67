// log.hpp: one logger (spdlog, to stderr) for the runtime and, through the
// host API, for plugins. stdout stays free for command results (--json).
#pragma once

#include <xquant/xq_abi.h>

#include <spdlog/spdlog.h>

namespace xquant {

// Idempotent: configures the "xquant" stderr logger on first use.
spdlog::logger& logger();
void set_log_level(xq_log_level level);
xq_log_level log_level();
spdlog::level::level_enum to_spdlog(xq_log_level level);

}  // namespace xquant
