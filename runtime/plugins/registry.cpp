#include "plugins/registry.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include "plugins/elf_symbols.hpp"

#include <boost/dll/shared_library.hpp>

#include <dlfcn.h>
#include <sys/auxv.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace xquant {

namespace {

// Loaded libraries live until the process exits: plugins may have handed
// out function pointers and static data, and unloading a library while
// anything still refers to it crashes at exit (see the ggml and ONNX Runtime
// reports in docs/architecture.md). Deliberately never destroyed.
std::vector<boost::dll::shared_library>& resident_libraries() {
  static auto* libs = new std::vector<boost::dll::shared_library>();
  return *libs;
}

std::string version_text(uint32_t v) { return fmt::format("{}.{}", XQ_ABI_MAJOR(v), XQ_ABI_MINOR(v)); }

size_t vtable_min_size(xq_plugin_kind kind) {
  switch (kind) {
    case XQ_PLUGIN_LOADER: return sizeof(xq_loader_vtable);
    case XQ_PLUGIN_ALGORITHM: return sizeof(xq_algorithm_vtable);
    // writer_set_report was appended later: a format built before it stops at read_module.
    case XQ_PLUGIN_FORMAT: return offsetof(xq_format_vtable, writer_set_report);
    // Entries appended later (qweight_packed_layout, qweight_adopt,
    // memory_info, qweight_prepare_blocks) are optional: a provider built before them stops at
    // qweight_layout, and callers check struct_size before reading them.
    case XQ_PLUGIN_KERNEL_PROVIDER: return offsetof(xq_kernel_vtable, qweight_packed_layout);
  }
  return 0;
}

bool is_shared_library(const fs::path& p) {
  auto name = p.filename().string();
  return name.size() > 3 && (name.ends_with(".so") || name.find(".so.") != std::string::npos);
}

}  // namespace

const char* plugin_kind_name(xq_plugin_kind kind) {
  switch (kind) {
    case XQ_PLUGIN_LOADER: return "loader";
    case XQ_PLUGIN_ALGORITHM: return "algorithm";
    case XQ_PLUGIN_FORMAT: return "format";
    case XQ_PLUGIN_KERNEL_PROVIDER: return "kernel";
  }
  return "unknown";
}

std::vector<std::string> LoadedPlugin::capabilities() const {
  std::vector<std::string> out;
  if (descriptor->capabilities)
    for (auto* c = descriptor->capabilities; *c; ++c) out.emplace_back(*c);
  return out;
}

bool LoadedPlugin::has_capability(const std::string& cap) const {
  auto caps = capabilities();
  return std::find(caps.begin(), caps.end(), cap) != caps.end();
}

#define XQ_VTABLE_ACCESSOR(fn, KIND, TYPE)                                                  \
  const TYPE& LoadedPlugin::fn() const {                                                    \
    if (kind() != KIND) fail(XQ_ERR_INTERNAL, "plugin '{}' is not a {}", name(), #fn);     \
    return *static_cast<const TYPE*>(descriptor->vtable);                                  \
  }
XQ_VTABLE_ACCESSOR(loader, XQ_PLUGIN_LOADER, xq_loader_vtable)
XQ_VTABLE_ACCESSOR(algorithm, XQ_PLUGIN_ALGORITHM, xq_algorithm_vtable)
XQ_VTABLE_ACCESSOR(format, XQ_PLUGIN_FORMAT, xq_format_vtable)
XQ_VTABLE_ACCESSOR(kernel, XQ_PLUGIN_KERNEL_PROVIDER, xq_kernel_vtable)
#undef XQ_VTABLE_ACCESSOR

PluginRegistry::PluginRegistry(ThreadPool& pool) : pool_(pool) {}

PluginRegistry::~PluginRegistry() {
  for (auto& p : plugins_)
    if (p->descriptor->shutdown) p->descriptor->shutdown(p->state);
}

namespace {

// The plugins folder of the layout the runtime's code was installed with
// (the build tree has the same one): <libdir>/xquant/plugins beside
// libxquant, or <bindir>/../<libdir>/xquant/plugins when the static core is
// linked into a program (the xquant CLI, the tests). dladdr names the file
// holding this code; for a program that is argv[0], so /proc/self/exe is
// read instead.
std::optional<fs::path> plugin_dir_beside_runtime() {
  Dl_info here{}, program{};
  if (!dladdr(reinterpret_cast<void*>(&plugin_dir_beside_runtime), &here) || !here.dli_fname) return std::nullopt;
  bool in_program = dladdr(reinterpret_cast<void*>(getauxval(AT_ENTRY)), &program) &&
                    program.dli_fbase == here.dli_fbase;
  if (!in_program) return fs::absolute(here.dli_fname).parent_path() / "xquant" / "plugins";
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return std::nullopt;
  return exe.parent_path().parent_path() / XQUANT_PLUGIN_SUBDIR;
}

}  // namespace

std::vector<fs::path> PluginRegistry::default_dirs() {
  std::vector<fs::path> dirs;
  if (auto beside = plugin_dir_beside_runtime()) dirs.push_back(*beside);
  if (const char* env = std::getenv("XQUANT_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':'))
      if (!item.empty()) dirs.emplace_back(item);
  }
  return dirs;
}

void PluginRegistry::skip(const fs::path& file, std::string reason) {
  logger().warn("skipping plugin {}: {}", file.string(), reason);
  skipped_.push_back({file, std::move(reason)});
}

void PluginRegistry::load_dir(const fs::path& dir) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(dir, ec);
  if (ec) canonical = dir;
  if (std::find(loaded_dirs_.begin(), loaded_dirs_.end(), canonical) != loaded_dirs_.end()) return;
  loaded_dirs_.push_back(canonical);
  if (!fs::is_directory(dir, ec)) {
    logger().debug("plugin folder {} does not exist", dir.string());
    return;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file() && is_shared_library(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_file(f);
}

bool PluginRegistry::load_file(const fs::path& file) {
  // Look for the entry symbol before dlopen, so a library that is not a
  // plugin never runs its static initialisers in our process.
  try {
    auto symbols = exported_dynamic_symbols(file);
    if (std::find(symbols.begin(), symbols.end(), XQ_PLUGIN_ENTRY_SYMBOL) == symbols.end()) {
      skip(file, fmt::format("no exported entry symbol '{}' (not an xquant plugin, or built without XQ_SDK_ENTRY)",
                             XQ_PLUGIN_ENTRY_SYMBOL));
      return false;
    }
  } catch (const std::exception& e) {
    skip(file, fmt::format("not a readable shared library ({})", e.what()));
    return false;
  }

  boost::dll::shared_library lib;
  try {
    lib.load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    const char* why = dlerror();
    skip(file, fmt::format("dlopen failed: {}", why ? why : e.what()));
    return false;
  }
  auto entry = reinterpret_cast<xq_plugin_entry_fn>(lib.get<void()>(XQ_PLUGIN_ENTRY_SYMBOL));
  resident_libraries().push_back(lib);

  const xq_plugin_descriptor* d = nullptr;
  try {
    d = entry(kHostAbiMin, kHostAbiMax);
  } catch (...) {
    skip(file, "entry function threw an exception across the C boundary");
    return false;
  }
  if (!d) {
    skip(file, fmt::format("plugin declined the host ABI range [{}, {}]", version_text(kHostAbiMin),
                           version_text(kHostAbiMax)));
    return false;
  }
  if (d->struct_size < offsetof(xq_plugin_descriptor, vtable) + sizeof(void*)) {
    skip(file, fmt::format("descriptor too small ({} bytes)", d->struct_size));
    return false;
  }
  if (XQ_ABI_MAJOR(d->abi_max) != XQ_ABI_MAJOR(kHostAbiMax) || d->abi_min > d->abi_max) {
    skip(file, fmt::format("ABI mismatch: plugin speaks [{}, {}], host speaks [{}, {}]", version_text(d->abi_min),
                           version_text(d->abi_max), version_text(kHostAbiMin), version_text(kHostAbiMax)));
    return false;
  }
  uint32_t chosen = std::min(kHostAbiMax, d->abi_max);
  if (chosen < std::max(kHostAbiMin, d->abi_min)) {
    skip(file, fmt::format("ABI mismatch: plugin speaks [{}, {}], host speaks [{}, {}]", version_text(d->abi_min),
                           version_text(d->abi_max), version_text(kHostAbiMin), version_text(kHostAbiMax)));
    return false;
  }
  if (!d->name || !*d->name || !d->version || !d->vtable) {
    skip(file, "descriptor lacks a name, version or vtable");
    return false;
  }
  size_t need = vtable_min_size(d->kind);
  if (need == 0) {
    skip(file, fmt::format("unknown plugin kind {}", static_cast<int>(d->kind)));
    return false;
  }
  uint32_t vt_size = *static_cast<const uint32_t*>(d->vtable);
  if (vt_size < need) {
    skip(file, fmt::format("{} vtable is {} bytes, ABI {} needs {}", plugin_kind_name(d->kind), vt_size,
                           version_text(chosen), need));
    return false;
  }
  if (auto* existing = find(d->kind, d->name)) {
    skip(file, fmt::format("a {} plugin named '{}' is already loaded from {}", plugin_kind_name(d->kind), d->name,
                           existing->path.string()));
    return false;
  }

  auto plugin = std::make_unique<LoadedPlugin>();
  plugin->path = file;
  plugin->descriptor = d;
  plugin->abi_version = chosen;
  plugin->pool = &pool_;
  init_host_api(*plugin);
  if (d->init) {
    set_last_error("");
    void* state = nullptr;
    xq_status s = XQ_ERR_INTERNAL;
    try {
      s = d->init(&plugin->host, chosen, &state);
    } catch (...) {
      set_last_error("init threw an exception across the C boundary");
    }
    if (s != XQ_OK) {
      skip(file, fmt::format("init failed ({}): {}", status_name(s), last_error().empty() ? "no message" : last_error()));
      return false;
    }
    plugin->state = state;
  }
  logger().debug("loaded {} plugin '{}' {} (ABI {}) from {}", plugin_kind_name(d->kind), d->name, d->version,
                 version_text(chosen), file.string());
  plugins_.push_back(std::move(plugin));
  return true;
}

LoadedPlugin* PluginRegistry::find(xq_plugin_kind kind, const std::string& name) const {
  for (const auto& p : plugins_)
    if (p->kind() == kind && p->name() == name) return p.get();
  return nullptr;
}

std::vector<LoadedPlugin*> PluginRegistry::of_kind(xq_plugin_kind kind) const {
  std::vector<LoadedPlugin*> out;
  for (const auto& p : plugins_)
    if (p->kind() == kind) out.push_back(p.get());
  return out;
}

LoadedPlugin& PluginRegistry::require(xq_plugin_kind kind, const std::string& name) const {
  if (auto* p = find(kind, name)) return *p;
  std::vector<std::string> names;
  for (auto* p : of_kind(kind)) names.push_back(p->name());
  fail(XQ_ERR_NOT_FOUND, "no {} plugin named '{}' (available: {})", plugin_kind_name(kind), name,
       names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", ")));
}

}  // namespace xquant
