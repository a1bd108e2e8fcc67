#include "cli/algorithm_info.hpp"

#include "cli/args.hpp"
#include "core/error.hpp"

#include <fmt/format.h>

#include <vector>

namespace xquant::cli {

namespace {

constexpr const char* kSchemeDefaultPrefix = "scheme-default:";

[[noreturn]] void bad_capability(const LoadedPlugin& plugin, const std::string& cap, const std::string& why) {
  fail(XQ_ERR_MALFORMED, "plugin '{}' ({}): capability '{}': {}", plugin.name(), plugin.path.string(), cap, why);
}

long long parse_int(const LoadedPlugin& plugin, const std::string& cap, const std::string& value, long long lo,
                    long long hi) {
  try {
    size_t used = 0;
    long long v = std::stoll(value, &used);
    if (used == value.size() && v >= lo && v <= hi) return v;
  } catch (const std::exception&) {
  }
  bad_capability(plugin, cap, fmt::format("expects an integer in {}..{}", lo, hi));
}

bool parse_bool(const LoadedPlugin& plugin, const std::string& cap, const std::string& value) {
  if (value == "true") return true;
  if (value == "false") return false;
  bad_capability(plugin, cap, "expects true or false");
}

std::string describe_scheme_defaults(const SchemeDefaults& d) {
  std::vector<std::string> parts;
  if (d.bits) parts.push_back(fmt::format("{} bits", *d.bits));
  if (d.symmetric) parts.push_back(*d.symmetric ? "symmetric" : "asymmetric");
  if (d.group_size) parts.push_back(fmt::format("group {}", *d.group_size));
  if (d.type) parts.push_back(*d.type == "float" ? "FP8 E4M3" : "integer");
  if (d.activations) parts.push_back(fmt::format("{} {} activations", d.type == std::optional<std::string>("float") ? "fp8" : "int8", *d.activations));
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string value_text(const xq_param_spec& s) {
  return s.default_value ? s.default_value : "(unset)";
}

}  // namespace

SchemeDefaults scheme_defaults_of(const LoadedPlugin& plugin) {
  SchemeDefaults d;
  const std::string prefix = kSchemeDefaultPrefix;
  for (const std::string& cap : plugin.capabilities()) {
    if (cap.rfind(prefix, 0) != 0) continue;
    std::string kv = cap.substr(prefix.size());
    auto eq = kv.find('=');
    if (eq == std::string::npos) bad_capability(plugin, cap, "expects KEY=VALUE");
    std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key == "bits") d.bits = static_cast<int>(parse_int(plugin, cap, value, 2, 8));
    else if (key == "symmetric") d.symmetric = parse_bool(plugin, cap, value);
    else if (key == "group_size") d.group_size = parse_int(plugin, cap, value, 1, 1 << 20);
    else if (key == "activations") {
      if (value != "dynamic" && value != "static") bad_capability(plugin, cap, "expects dynamic or static");
      d.activations = value;
    } else if (key == "type") {
      if (value != "int" && value != "float") bad_capability(plugin, cap, "expects int or float");
      d.type = value;
    } else {
      bad_capability(plugin, cap, "unknown key (bits, symmetric, group_size, activations, type)");
    }
  }
  return d;
}

LoadedPlugin& require_algorithm(const PluginRegistry& registry, const std::string& name) {
  if (LoadedPlugin* p = registry.find(XQ_PLUGIN_ALGORITHM, name)) return *p;
  std::vector<std::string> names;
  for (LoadedPlugin* p : registry.of_kind(XQ_PLUGIN_ALGORITHM)) names.push_back(p->name());
  std::string near = nearest(name, names);
  throw UsageError(fmt::format("unknown algorithm '{}'{} (loaded algorithm plugins: {})", name,
                               near.empty() ? "" : fmt::format("; did you mean '{}'?", near),
                               names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "))));
}

std::string describe_algorithms(const PluginRegistry& registry) {
  std::string out;
  for (LoadedPlugin* p : registry.of_kind(XQ_PLUGIN_ALGORITHM)) {
    out += fmt::format("  {:<12} {}\n", p->name(), p->descriptor->description ? p->descriptor->description : "");
    std::string scheme;
    try {
      scheme = describe_scheme_defaults(scheme_defaults_of(*p));
    } catch (const Error& e) {
      scheme = e.what();
    }
    if (!scheme.empty()) out += fmt::format("  {:<12}   scheme defaults: {}\n", "", scheme);
    for (const xq_param_spec* s = p->descriptor->params; s && s->name; ++s)
      out += fmt::format("  {:<12}   {}={}: {}\n", "", s->name, value_text(*s), s->help ? s->help : "");
  }
  return out.empty() ? "  (no algorithm plugin loaded)\n" : out;
}

}  // namespace xquant::cli
