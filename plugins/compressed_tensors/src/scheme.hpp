// scheme.hpp: the compressed-tensors quantization_config, both ways.
//
// Reading: parse config.json's quantization_config into the groups, ignore
// list and packing version, and find the scheme of one module the way
// compressed-tensors/vLLM match targets (exact name, then "re:" regex with
// Python re.match semantics, then the "Linear" class). Writing: turn a
// canonical xq_quant_tensor's settings into the QuantizationArgs JSON that
// llm-compressor writes, so vLLM and compressed-tensors accept the result.
#pragma once

#include <xquant/sdk/host.hpp>
#include <xquant/xq_tensor.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace xquant::ct {

// The version whose packing this writer follows (dense, see packing.hpp), written into
// quantization_config.version.
inline constexpr const char* kWriterVersion = "0.20.0";

struct Args {
  uint32_t num_bits = 8;
  std::string type = "int";
  bool symmetric = true;
  std::string strategy;      // tensor | channel | group | token | block | ...
  int64_t group_size = 0;    // > 0 for group
  bool dynamic = false;
  std::string actorder;      // "" | "group" | "weight"
};

struct Scheme {
  std::string name;
  std::vector<std::string> targets;
  std::optional<Args> weights;
  std::optional<Args> input_activations;
  bool output_activations = false;
  std::string format;  // per-group override, may be empty
};

// A compiled target or ignore entry.
struct Matcher {
  enum Kind { kExact, kRegex, kClass } kind = kExact;
  std::string text;
  std::regex re;
  bool matches(const std::string& module) const;
};

struct QuantConfig {
  std::string format;
  std::string version;
  bool legacy_packing = false;  // version <= 0.17.x (or absent)
  std::vector<Scheme> groups;
  std::vector<std::vector<Matcher>> group_targets;  // parallel to groups
  std::vector<Matcher> ignore;
  bool has_transforms = false;
};

// Parses the raw JSON text of quantization_config; MALFORMED on bad input.
QuantConfig parse_quant_config(const std::string& text);

// True when version "a.b.c..." is older than 0.18.0 (or missing).
bool is_legacy_version(const std::string& version);

// The scheme of `module`, or nullptr when no group targets it. `*ignored` is
// set when the ignore list names it (then nullptr is returned).
const Scheme* match_module(const QuantConfig& qc, const std::string& module, bool* ignored);

// QuantizationArgs JSON as llm-compressor writes it.
nlohmann::json weight_args_json(const xq_quant_tensor& q);
nlohmann::json activation_args_json(const xq_quant_tensor& q);  // null when weight-only

// The compressed-tensors format of a canonical tensor: "float-quantized" for
// FP8 codes, "int-quantized" when activations are quantized (the library's
// priority rule), else "pack-quantized".
const char* format_of(const xq_quant_tensor& q);

}  // namespace xquant::ct
