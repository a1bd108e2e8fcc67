// registry.hpp: plugin discovery, loading (Boost.DLL, RTLD_LOCAL|RTLD_NOW),
// two-way ABI negotiation and the table of loaded plugins.
//
// Search order: the plugins folder beside libxquant (<libdir>/xquant/plugins,
// the same in the build tree and in install prefixes; <bindir>/../<libdir>/
// xquant/plugins for programs linking the static core), each folder of
// XQUANT_PLUGIN_PATH, then folders added by the caller (a pipeline's own
// `plugins.paths`). A file that is not a plugin, lacks the entry symbol,
// shares no ABI version or fails init is skipped with a message naming the
// file and why; it never stops discovery. Libraries are never unloaded.
#pragma once

#include <xquant/xq_algorithm.h>
#include <xquant/xq_format.h>
#include <xquant/xq_kernel.h>
#include <xquant/xq_loader.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace xquant {

class ThreadPool;

struct LoadedPlugin {
  std::filesystem::path path;
  const xq_plugin_descriptor* descriptor = nullptr;
  uint32_t abi_version = 0;  // negotiated
  void* state = nullptr;
  xq_host_api host{};  // this plugin's copy; ctx points back here
  ThreadPool* pool = nullptr;

  std::string name() const { return descriptor->name; }
  xq_plugin_kind kind() const { return descriptor->kind; }
  std::vector<std::string> capabilities() const;
  bool has_capability(const std::string& cap) const;

  // The kind's vtable (checked at load time to be of the right kind and size).
  const xq_loader_vtable& loader() const;
  const xq_algorithm_vtable& algorithm() const;
  const xq_format_vtable& format() const;
  const xq_kernel_vtable& kernel() const;
};

struct SkippedPlugin {
  std::filesystem::path path;
  std::string reason;
};

const char* plugin_kind_name(xq_plugin_kind kind);

class PluginRegistry {
 public:
  explicit PluginRegistry(ThreadPool& pool);
  ~PluginRegistry();

  // The default folders (beside the runtime, then XQUANT_PLUGIN_PATH).
  static std::vector<std::filesystem::path> default_dirs();
  // Loads every shared library in `dir` (non-recursive, sorted by name).
  void load_dir(const std::filesystem::path& dir);
  // Loads one file; returns false (and records why) when skipped.
  bool load_file(const std::filesystem::path& file);

  const std::vector<std::unique_ptr<LoadedPlugin>>& plugins() const { return plugins_; }
  const std::vector<SkippedPlugin>& skipped() const { return skipped_; }
  LoadedPlugin* find(xq_plugin_kind kind, const std::string& name) const;
  std::vector<LoadedPlugin*> of_kind(xq_plugin_kind kind) const;
  // Like find, but throws XQ_ERR_NOT_FOUND listing the available names.
  LoadedPlugin& require(xq_plugin_kind kind, const std::string& name) const;

 private:
  void skip(const std::filesystem::path& file, std::string reason);
  ThreadPool& pool_;
  std::vector<std::unique_ptr<LoadedPlugin>> plugins_;
  std::vector<SkippedPlugin> skipped_;
  std::vector<std::filesystem::path> loaded_dirs_;
};

// Host ABI range this runtime speaks.
constexpr uint32_t kHostAbiMin = XQ_ABI_VERSION_1_0;
constexpr uint32_t kHostAbiMax = XQ_ABI_VERSION;

// Fills `plugin.host` (the table handed to the plugin's init).
void init_host_api(LoadedPlugin& plugin);

}  // namespace xquant
