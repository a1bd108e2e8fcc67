#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <atomic>
#include <mutex>

namespace xquant {

namespace {
std::atomic<int> g_level{XQ_LOG_INFO};
}

spdlog::level::level_enum to_spdlog(xq_log_level level) {
  switch (level) {
    case XQ_LOG_TRACE: return spdlog::level::trace;
    case XQ_LOG_DEBUG: return spdlog::level::debug;
    case XQ_LOG_INFO: return spdlog::level::info;
    case XQ_LOG_WARN: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

spdlog::logger& logger() {
  static std::once_flag once;
  static std::shared_ptr<spdlog::logger> instance;
  std::call_once(once, [] {
    instance = spdlog::get("xquant");
    if (!instance) instance = spdlog::stderr_color_mt("xquant");
    instance->set_pattern("%^[%l]%$ %v");
    instance->set_level(to_spdlog(static_cast<xq_log_level>(g_level.load())));
  });
  return *instance;
}

void set_log_level(xq_log_level level) {
  g_level = level;
  logger().set_level(to_spdlog(level));
}

xq_log_level log_level() { return static_cast<xq_log_level>(g_level.load()); }

}  // namespace xquant
