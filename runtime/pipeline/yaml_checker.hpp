// yaml_checker.hpp: collects schema errors while walking a YAML tree, each
// with file, line, column and key path.
#pragma once

#include "pipeline/pipeline.hpp"

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

namespace xquant {

class YamlChecker {
 public:
  explicit YamlChecker(std::string file) : file_(std::move(file)) {}

  SourceMark mark(const YAML::Node& node, const std::string& key) const;
  void error(const YAML::Node& node, const std::string& key, const std::string& message);
  void error_at(const SourceMark& mark, const std::string& message);
  // Reports keys of `map` not in `allowed`, suggesting the nearest.
  void check_keys(const YAML::Node& map, const std::string& path, const std::vector<std::string>& allowed);
  bool expect_map(const YAML::Node& node, const std::string& path);
  bool expect_sequence(const YAML::Node& node, const std::string& path);

  std::optional<std::string> get_string(const YAML::Node& node, const std::string& path);
  std::optional<int64_t> get_int(const YAML::Node& node, const std::string& path, int64_t lo, int64_t hi);
  std::optional<double> get_float(const YAML::Node& node, const std::string& path);
  std::optional<bool> get_bool(const YAML::Node& node, const std::string& path);
  std::optional<std::string> get_choice(const YAML::Node& node, const std::string& path,
                                        const std::vector<std::string>& choices);

  const std::vector<std::string>& errors() const { return errors_; }
  // Throws Error(XQ_ERR_INVALID_ARGUMENT) with every collected error.
  void throw_if_errors() const;

 private:
  std::string file_;
  std::vector<std::string> errors_;
};

}  // namespace xquant
