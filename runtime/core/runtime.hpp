// runtime.hpp: one xquant runtime: options, the thread pool and the loaded
// plugins. The CLI and the C API (xquant.h) each create one.
#pragma once

#include "core/thread_pool.hpp"
#include "plugins/registry.hpp"

#include <xquant/xq_abi.h>

#include <filesystem>
#include <string>
#include <vector>

namespace xquant {

struct RuntimeOptions {
  xq_log_level log_level = XQ_LOG_INFO;
  unsigned threads = 0;  // 0 = hardware concurrency
  std::vector<std::filesystem::path> plugin_dirs;  // searched after the defaults
  bool load_default_plugins = true;
};

class Runtime {
 public:
  explicit Runtime(const RuntimeOptions& options);
  ThreadPool& pool() { return pool_; }
  PluginRegistry& plugins() { return registry_; }
  const RuntimeOptions& options() const { return options_; }

 private:
  RuntimeOptions options_;
  ThreadPool pool_;
  PluginRegistry registry_;
};

}  // namespace xquant
