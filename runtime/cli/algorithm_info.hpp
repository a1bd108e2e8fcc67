// algorithm_info.hpp: what `xquant quantize` asks an algorithm plugin
// instead of knowing it by name: the weight/activation scheme it is used with
// unless the user says otherwise (the "scheme-default:" capability strings of
// docs/abi.md) and, for --help, its declared params and their defaults.
#pragma once

#include "plugins/registry.hpp"

#include <optional>
#include <string>

namespace xquant::cli {

// Each field unset = the plugin declares nothing; the command's generic
// default applies.
struct SchemeDefaults {
  std::optional<int> bits;
  std::optional<bool> symmetric;
  std::optional<long long> group_size;
  std::optional<std::string> activations;  // "dynamic" or "static" (W8A8)
  std::optional<std::string> type;         // "int" or "float" (FP8 E4M3)
};

// Parses the plugin's "scheme-default:KEY=VALUE" capabilities. Throws Error
// naming the plugin and the capability when one is malformed.
SchemeDefaults scheme_defaults_of(const LoadedPlugin& plugin);

// The algorithm plugin named `name`, or a UsageError
// "unknown algorithm 'gtpq'; did you mean 'gptq'? (loaded: ...)".
LoadedPlugin& require_algorithm(const PluginRegistry& registry, const std::string& name);

// Help text: each loaded algorithm with its description, scheme defaults
// and params (name=default: help).
std::string describe_algorithms(const PluginRegistry& registry);

}  // namespace xquant::cli
