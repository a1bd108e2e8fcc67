// validate.cpp: the checks of a pipeline that need the loaded plugins:
// plugin names, and each plugin's params against its declared specs
// (unknown keys, types, defaults). Runs before any heavy work.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "pipeline/nearest.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/yaml_checker.hpp"

#include <fmt/format.h>

namespace xquant {

namespace {

std::optional<KvValue> convert(YamlChecker& c, const YAML::Node& node, const std::string& path, xq_value_type type) {
  switch (type) {
    case XQ_VALUE_BOOL:
      if (auto v = c.get_bool(node, path)) return KvValue::boolean(*v);
      return std::nullopt;
    case XQ_VALUE_INT:
      if (auto v = c.get_int(node, path, INT64_MIN, INT64_MAX)) return KvValue::integer(*v);
      return std::nullopt;
    case XQ_VALUE_FLOAT:
      if (auto v = c.get_float(node, path)) return KvValue::number(*v);
      return std::nullopt;
    case XQ_VALUE_STRING:
      if (auto v = c.get_string(node, path)) return KvValue::string(*v);
      return std::nullopt;
    case XQ_VALUE_INT_ARRAY:
    case XQ_VALUE_FLOAT_ARRAY:
    case XQ_VALUE_STRING_ARRAY: {
      if (!c.expect_sequence(node, path)) return std::nullopt;
      std::vector<int64_t> ints;
      std::vector<double> floats;
      std::vector<std::string> strings;
      bool ok = true;
      for (size_t i = 0; i < node.size(); ++i) {
        std::string key = fmt::format("{}[{}]", path, i);
        if (type == XQ_VALUE_INT_ARRAY) {
          auto v = c.get_int(node[i], key, INT64_MIN, INT64_MAX);
          ok = ok && v;
          if (v) ints.push_back(*v);
        } else if (type == XQ_VALUE_FLOAT_ARRAY) {
          auto v = c.get_float(node[i], key);
          ok = ok && v;
          if (v) floats.push_back(*v);
        } else {
          auto v = c.get_string(node[i], key);
          ok = ok && v;
          if (v) strings.push_back(*v);
        }
      }
      if (!ok) return std::nullopt;
      if (type == XQ_VALUE_INT_ARRAY) return KvValue::integers(std::move(ints));
      if (type == XQ_VALUE_FLOAT_ARRAY) return KvValue::numbers(std::move(floats));
      return KvValue::strings(std::move(strings));
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

// Fills `out` from `params` (may be undefined) per the plugin's specs.
void validate_params(YamlChecker& c, const LoadedPlugin& plugin, const YAML::Node& params, const std::string& path,
                     const YAML::Node& owner, Kv& out) {
  std::vector<std::string> names;
  const xq_param_spec* specs = plugin.descriptor->params;
  if (specs)
    for (const auto* s = specs; s->name; ++s) names.emplace_back(s->name);
  if (params && params.IsMap()) {
    for (auto it = params.begin(); it != params.end(); ++it) {
      std::string key = it->first.as<std::string>("");
      bool known = false;
      for (const auto& n : names) known = known || n == key;
      if (known) continue;
      std::string near = nearest_word(key, names);
      c.error(it->first, path + "." + key,
              fmt::format("'{}' has no parameter '{}'{}", plugin.name(), key,
                          near.empty() ? (names.empty() ? std::string(" (it takes none)")
                                                        : fmt::format(" (it takes: {})", fmt::join(names, ", ")))
                                       : fmt::format("; did you mean '{}'?", near)));
    }
  }
  if (!specs) return;
  for (const auto* s = specs; s->name; ++s) {
    const bool is_map = params && params.IsMap();
    const YAML::Node given = is_map ? YAML::Node(params[s->name]) : YAML::Node();
    if (is_map && given && !given.IsNull()) {
      if (auto v = convert(c, given, path + "." + s->name, s->type)) out.set(s->name, *v);
    } else if (s->default_value) {
      YamlChecker defaults(plugin.path.string());
      auto v = convert(defaults, YAML::Load(s->default_value), s->name, s->type);
      if (v) out.set(s->name, *v);
      else c.error(owner, path, fmt::format("plugin '{}' declares an invalid default for '{}'", plugin.name(), s->name));
    }
  }
}

namespace {

LoadedPlugin* require_plugin(YamlChecker& c, Runtime& rt, xq_plugin_kind kind, const std::string& name,
                             const SourceMark& mark) {
  if (auto* p = rt.plugins().find(kind, name)) return p;
  std::vector<std::string> names;
  for (auto* p : rt.plugins().of_kind(kind)) names.push_back(p->name());
  std::string near = nearest_word(name, names);
  c.error_at(mark, fmt::format("no {} plugin named '{}'{} (available: {})", plugin_kind_name(kind), name,
                               near.empty() ? "" : fmt::format("; did you mean '{}'?", near),
                               names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "))));
  return nullptr;
}

}  // namespace

void validate_with_plugins(Pipeline& p, Runtime& rt) {
  YamlChecker c(p.file.string());
  if (!p.loader.empty()) require_plugin(c, rt, XQ_PLUGIN_LOADER, p.loader, p.loader_mark);
  for (size_t i = 0; i < p.rules.size(); ++i) {
    auto& rule = p.rules[i];
    for (auto& st : rule.stages) {
      std::string path = rule.stages.size() == 1 ? fmt::format("quantize[{}].params", i)
                                                 : fmt::format("quantize[{}].params.{}", i, st.name);
      if (auto* plugin = require_plugin(c, rt, XQ_PLUGIN_ALGORITHM, st.name, st.mark)) {
        validate_params(c, *plugin, st.params, path, st.params, st.validated_params);
        // In a chain every stage but the last only transforms: a plugin that
        // can do either (a `quantize` param) is told so unless the user said.
        const bool last = &st == &rule.stages.back();
        const bool user_set = st.params && st.params.IsMap() && st.params["quantize"];
        if (!last && !user_set && st.validated_params.has("quantize"))
          st.validated_params.set("quantize", KvValue::boolean(false));
      }
    }
  }
  if (auto* fmt_plugin = require_plugin(c, rt, XQ_PLUGIN_FORMAT, p.output_format, p.format_mark))
    validate_params(c, *fmt_plugin, p.output_params, "output.params", p.output_params, p.validated_output_params);
  c.throw_if_errors();
}

}  // namespace xquant
