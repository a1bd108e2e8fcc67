// runtime_api.cpp: the runtime half of xquant.h: version, last error,
// runtime lifetime, plugins, pipelines. (model_api.cpp has the models.)
#include "capi/runtime_api.hpp"

#include "core/log.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

using namespace xquant;

namespace {

std::string plugin_line(const LoadedPlugin& p) {
  nlohmann::json j;
  j["name"] = p.name();
  j["kind"] = plugin_kind_name(p.kind());
  j["version"] = p.descriptor->version;
  j["abi"] = fmt::format("{}.{}", XQ_ABI_MAJOR(p.abi_version), XQ_ABI_MINOR(p.abi_version));
  j["capabilities"] = p.capabilities();
  j["path"] = p.path.string();
  return j.dump();
}

void refresh_plugin_json(xq_runtime* r) {
  r->plugin_json.clear();
  for (const auto& p : r->runtime->plugins().plugins()) r->plugin_json.push_back(plugin_line(*p));
}

void check_runtime(const xq_runtime* r) {
  if (!r || !r->runtime) throw Error(XQ_ERR_INVALID_ARGUMENT, "runtime handle is NULL");
}

}  // namespace

extern "C" {

XQ_API const char* xq_version(void) { return XQUANT_VERSION; }

XQ_API const char* xq_last_error(void) { return last_error().c_str(); }

XQ_API const char* xq_status_string(xq_status status) { return status_name(status); }

XQ_API xq_status xq_runtime_create(const xq_runtime_options* options, xq_runtime** out) {
  return capi::boundary([&] {
    if (!out) throw Error(XQ_ERR_INVALID_ARGUMENT, "xq_runtime_create: out is NULL");
    RuntimeOptions o;
    if (options) {
      if (options->struct_size < sizeof(uint32_t) * 4)
        throw Error(XQ_ERR_INVALID_ARGUMENT, "xq_runtime_options.struct_size is too small");
      o.log_level = options->log_level;
      o.threads = options->num_threads;
      if (XQ_HAS_FIELD(options, xq_runtime_options, plugin_path) && options->plugin_path) {
        std::stringstream ss(options->plugin_path);
        std::string item;
        while (std::getline(ss, item, ':'))
          if (!item.empty()) o.plugin_dirs.emplace_back(item);
      }
    }
    auto r = std::make_unique<xq_runtime>();
    r->runtime = std::make_unique<Runtime>(o);
    refresh_plugin_json(r.get());
    *out = r.release();
  });
}

XQ_API void xq_runtime_destroy(xq_runtime* runtime) { delete runtime; }

XQ_API xq_status xq_runtime_load_plugins(xq_runtime* runtime, const char* dir) {
  return capi::boundary([&] {
    check_runtime(runtime);
    if (!dir) throw Error(XQ_ERR_INVALID_ARGUMENT, "xq_runtime_load_plugins: dir is NULL");
    if (!std::filesystem::is_directory(dir)) fail(XQ_ERR_NOT_FOUND, "plugin folder '{}' does not exist", dir);
    runtime->runtime->plugins().load_dir(dir);
    refresh_plugin_json(runtime);
  });
}

XQ_API uint32_t xq_runtime_plugin_count(const xq_runtime* runtime) {
  return runtime ? static_cast<uint32_t>(runtime->plugin_json.size()) : 0;
}

XQ_API const char* xq_runtime_plugin_json(const xq_runtime* runtime, uint32_t index) {
  if (!runtime || index >= runtime->plugin_json.size()) return nullptr;
  return runtime->plugin_json[index].c_str();
}

XQ_API xq_status xq_run_pipeline_file(xq_runtime* runtime, const char* path) {
  return capi::boundary([&] {
    check_runtime(runtime);
    if (!path) throw Error(XQ_ERR_INVALID_ARGUMENT, "xq_run_pipeline_file: path is NULL");
    Pipeline p = parse_pipeline_file(path);
    run_pipeline(*runtime->runtime, p);
    refresh_plugin_json(runtime);
  });
}

XQ_API xq_status xq_run_pipeline_string(xq_runtime* runtime, const char* yaml, const char* base_dir) {
  return capi::boundary([&] {
    check_runtime(runtime);
    if (!yaml) throw Error(XQ_ERR_INVALID_ARGUMENT, "xq_run_pipeline_string: yaml is NULL");
    std::filesystem::path base = base_dir ? std::filesystem::path(base_dir) : std::filesystem::current_path();
    Pipeline p = parse_pipeline_text(yaml, "<pipeline string>", std::filesystem::absolute(base));
    run_pipeline(*runtime->runtime, p);
    refresh_plugin_json(runtime);
  });
}

}  // extern "C"
