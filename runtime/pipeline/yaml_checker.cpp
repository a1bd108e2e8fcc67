#include "pipeline/yaml_checker.hpp"

#include "core/error.hpp"
#include "pipeline/nearest.hpp"

#include <fmt/format.h>

namespace xquant {

std::string SourceMark::text() const { return fmt::format("{}:{}:{}: {}", file, line, column, key); }

SourceMark YamlChecker::mark(const YAML::Node& node, const std::string& key) const {
  SourceMark m;
  m.file = file_;
  m.key = key;
  if (node.IsDefined()) {
    auto mk = node.Mark();
    if (mk.line >= 0) {
      m.line = mk.line + 1;
      m.column = mk.column + 1;
    }
  }
  return m;
}

void YamlChecker::error(const YAML::Node& node, const std::string& key, const std::string& message) {
  errors_.push_back(fmt::format("{}: {}", mark(node, key).text(), message));
}

void YamlChecker::error_at(const SourceMark& m, const std::string& message) {
  errors_.push_back(fmt::format("{}: {}", m.text(), message));
}

void YamlChecker::check_keys(const YAML::Node& map, const std::string& path, const std::vector<std::string>& allowed) {
  if (!map.IsMap()) return;
  for (auto it = map.begin(); it != map.end(); ++it) {
    std::string key = it->first.as<std::string>("");
    bool known = false;
    for (const auto& a : allowed) known = known || a == key;
    if (known) continue;
    std::string near = nearest_word(key, allowed);
    std::string full = path.empty() ? key : path + "." + key;
    errors_.push_back(fmt::format("{}: unknown key '{}'{}", mark(it->first, full).text(), key,
                                  near.empty() ? fmt::format(" (valid keys: {})", fmt::join(allowed, ", "))
                                               : fmt::format("; did you mean '{}'?", near)));
  }
}

bool YamlChecker::expect_map(const YAML::Node& node, const std::string& path) {
  if (node.IsMap()) return true;
  error(node, path, "expected a mapping (key: value pairs)");
  return false;
}

bool YamlChecker::expect_sequence(const YAML::Node& node, const std::string& path) {
  if (node.IsSequence()) return true;
  error(node, path, "expected a list");
  return false;
}

std::optional<std::string> YamlChecker::get_string(const YAML::Node& node, const std::string& path) {
  if (!node.IsScalar()) {
    error(node, path, "expected a string");
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<int64_t> YamlChecker::get_int(const YAML::Node& node, const std::string& path, int64_t lo, int64_t hi) {
  int64_t v = 0;
  if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, v)) {
    error(node, path, fmt::format("expected an integer, got '{}'", node.IsScalar() ? node.Scalar() : "a structure"));
    return std::nullopt;
  }
  if (v < lo || v > hi) {
    error(node, path, fmt::format("must be between {} and {}, got {}", lo, hi, v));
    return std::nullopt;
  }
  return v;
}

std::optional<double> YamlChecker::get_float(const YAML::Node& node, const std::string& path) {
  double v = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, v)) {
    error(node, path, fmt::format("expected a number, got '{}'", node.IsScalar() ? node.Scalar() : "a structure"));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> YamlChecker::get_bool(const YAML::Node& node, const std::string& path) {
  bool v = false;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, v)) {
    error(node, path, fmt::format("expected true or false, got '{}'", node.IsScalar() ? node.Scalar() : "a structure"));
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> YamlChecker::get_choice(const YAML::Node& node, const std::string& path,
                                                   const std::vector<std::string>& choices) {
  auto s = get_string(node, path);
  if (!s) return std::nullopt;
  for (const auto& c : choices)
    if (*s == c) return s;
  std::string near = nearest_word(*s, choices);
  error(node, path, fmt::format("'{}' is not one of: {}{}", *s, fmt::join(choices, ", "),
                                near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
  return std::nullopt;
}

void YamlChecker::throw_if_errors() const {
  if (errors_.empty()) return;
  std::string msg = errors_.size() == 1 ? "invalid pipeline:\n" : fmt::format("invalid pipeline ({} problems):\n", errors_.size());
  for (const auto& e : errors_) msg += "  " + e + "\n";
  msg.pop_back();
  throw Error(XQ_ERR_INVALID_ARGUMENT, msg);
}

}  // namespace xquant
