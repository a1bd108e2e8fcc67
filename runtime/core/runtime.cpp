#include "core/runtime.hpp"

#include "core/log.hpp"

namespace xquant {

Runtime::Runtime(const RuntimeOptions& options)
    : options_(options), pool_(options.threads), registry_(pool_) {
  set_log_level(options.log_level);
  if (options.load_default_plugins)
    for (const auto& dir : PluginRegistry::default_dirs()) registry_.load_dir(dir);
  for (const auto& dir : options.plugin_dirs) registry_.load_dir(dir);
}

}  // namespace xquant
