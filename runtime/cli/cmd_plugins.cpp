// cmd_plugins.cpp: `xquant plugins [--json]`: every loaded plugin's name,
// kind, version, negotiated and supported ABI range, capabilities and
// parameters, read from descriptors without running any plugin work; then
// the files that were skipped and why.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/kv.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstdio>

namespace xquant::cli {

namespace {
std::string ver(uint32_t v) { return fmt::format("{}.{}", XQ_ABI_MAJOR(v), XQ_ABI_MINOR(v)); }
}  // namespace

nlohmann::json plugin_json(const LoadedPlugin& p) {
  nlohmann::json j;
  j["name"] = p.name();
  j["kind"] = plugin_kind_name(p.kind());
  j["version"] = p.descriptor->version;
  j["description"] = p.descriptor->description ? p.descriptor->description : "";
  j["abi"] = ver(p.abi_version);
  j["abi_min"] = ver(p.descriptor->abi_min);
  j["abi_max"] = ver(p.descriptor->abi_max);
  j["path"] = p.path.string();
  j["capabilities"] = p.capabilities();
  nlohmann::json params = nlohmann::json::array();
  if (p.descriptor->params)
    for (const auto* s = p.descriptor->params; s->name; ++s)
      params.push_back({{"name", s->name},
                        {"type", value_type_name(s->type)},
                        {"default", s->default_value ? nlohmann::json(s->default_value) : nlohmann::json()},
                        {"help", s->help ? s->help : ""}});
  j["params"] = params;
  if (p.kind() == XQ_PLUGIN_KERNEL_PROVIDER) {
    const char* why = nullptr;
    j["score"] = p.kernel().score(p.state, &why);
    j["status"] = why ? why : "";
  }
  return j;
}

int cmd_plugins(const RuntimeOptions& options, int argc, char** argv) {
  Args args("plugins", "List the plugins this runtime found, with their ABI range and capabilities.",
            {{"json", "", "print JSON instead of a table"}});
  if (!args.parse(argc, argv)) return 0;
  Runtime runtime(options);
  const auto& reg = runtime.plugins();
  if (args.flag("json")) {
    nlohmann::json out;
    out["plugins"] = nlohmann::json::array();
    for (const auto& p : reg.plugins()) out["plugins"].push_back(plugin_json(*p));
    out["skipped"] = nlohmann::json::array();
    for (const auto& s : reg.skipped()) out["skipped"].push_back({{"path", s.path.string()}, {"reason", s.reason}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%-20s %-10s %-8s %-9s %s\n", "NAME", "KIND", "VERSION", "ABI", "CAPABILITIES");
  for (const auto& p : reg.plugins()) {
    auto caps = p->capabilities();
    std::string status;
    if (p->kind() == XQ_PLUGIN_KERNEL_PROVIDER) {
      const char* why = nullptr;
      uint32_t score = p->kernel().score(p->state, &why);
      status = fmt::format(" [score {}{}{}]", score, why ? ": " : "", why ? why : "");
    }
    std::printf("%-20s %-10s %-8s %-9s %s%s\n", p->name().c_str(), plugin_kind_name(p->kind()),
                p->descriptor->version, fmt::format("{}-{}", ver(p->descriptor->abi_min), ver(p->descriptor->abi_max)).c_str(),
                fmt::format("{}", fmt::join(caps, " ")).c_str(), status.c_str());
  }
  if (reg.plugins().empty()) std::printf("(no plugins found; set XQUANT_PLUGIN_PATH or use --plugin-path)\n");
  for (const auto& s : reg.skipped()) std::printf("skipped %s: %s\n", s.path.string().c_str(), s.reason.c_str());
  return 0;
}

}  // namespace xquant::cli
