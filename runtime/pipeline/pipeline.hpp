// pipeline.hpp: a validated pipeline plan, the typed form of a YAML file.
//
// parse_pipeline() checks the whole file (syntax, keys, types, ranges,
// regexes) and reports every problem at once, each as
// "file:line:column: key.path: message", unknown keys with the nearest
// valid one. validate_with_plugins() then checks what needs the loaded
// plugins (names exist, params match each plugin's declared params). Both
// run before any heavy work. docs/pipeline.md is the reference.
#pragma once

#include "calibrate/moe_calibration.hpp"
#include "core/kv.hpp"

#include <xquant/xq_tensor.h>

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace xquant {

class Runtime;

// Where a value came from, for messages after parsing.
struct SourceMark {
  std::string file;
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  std::string key;  // e.g. "quantize[0].weights.bits"
  std::string text() const;  // "file:line:col: key"
};

// One entry of targets/ignore: "Linear" (every Linear), an exact module
// name, or "re:<regex>" (matched from the start of the name, as Python's
// re.match in compressed-tensors/llm-compressor).
struct TargetPattern {
  std::string text;
  bool is_class = false;
  bool is_regex = false;
  std::regex regex;
  bool matches(const std::string& module) const;
};

struct WeightScheme {
  std::string type = "int";  // int | float (FP8 E4M3: bits 8, symmetric, channel or tensor)
  int bits = 4;
  bool symmetric = true;
  xq_strategy strategy = XQ_STRATEGY_GROUP;
  int64_t group_size = 128;
  std::string scale_dtype = "auto";  // auto | float32 | float16 | bfloat16
};

struct ActivationScheme {
  bool enabled = false;
  std::string type = "int";  // int | float; defaults to the weights' type
  int bits = 8;
  bool dynamic = true;             // per token at run time
  std::string strategy = "token";  // token | tensor
};

// xq_quant_scheme.bits / act_bits of a scheme: the integer width, or
// XQ_BITS_F8_E4M3 for type float (xq_tensor.h).
uint32_t abi_bits(const std::string& type, int bits);

// One algorithm of a rule. A rule may chain several (`algorithm:
// [smoothquant, gptq]`): every stage but the last only transforms the
// weights (rescaling), the last quantizes.
struct AlgorithmStage {
  std::string name;
  SourceMark mark;
  YAML::Node params;  // checked against the plugin's xq_param_spec list
  Kv validated_params;
};

struct QuantRule {
  std::vector<AlgorithmStage> stages;
  std::vector<TargetPattern> targets;
  std::vector<TargetPattern> ignore;
  WeightScheme weights;
  ActivationScheme activations;
  SourceMark mark;
  // `algorithm: auto`: the decision engine (runtime/decide/) picks the
  // algorithm per layer group; stages is empty then.
  bool automatic = false;
  // `algorithm: auto` with `params: {candidates: [rtn, awq]}`: the
  // algorithms (or chains, "smoothquant+gptq") it measures; empty = every one
  // the plugins offer. Checked against the registry by the decision engine.
  std::vector<std::string> candidates;
  std::string algorithm_names() const;  // "smoothquant+gptq"
};

// `accuracy:`: the target the decision engine falls back towards
// (docs/decide.md). max_increase is relative for ppl (0.01 = 1%),
// absolute for kld (nats).
struct AccuracySpec {
  bool enabled = false;
  std::filesystem::path text;        // held-out evaluation text
  std::string metric = "kld";        // kld | ppl
  double max_increase = 0.01;
  std::vector<std::string> fallback = {"int8", "bf16"};  // the ladder above the rule's bits
  int64_t max_tokens = 32768;
  // The most weight bytes (codes + scales + zero points; dense groups as
  // stored) the covered Linears may take: the fallback climbs no further
  // (0 = no limit). A target not met within it is reported as missed.
  uint64_t max_bytes = 0;
  // Also search the plain weight-error ranking (the baseline the report
  // compares against); costs a third fallback search.
  bool compare_baseline = false;
  SourceMark mark;
};

struct CalibrationSpec {
  bool enabled = false;
  std::filesystem::path text;
  std::filesystem::path tokenizer;  // a checkpoint whose vocabulary to use ("" = the model's own)
  int64_t samples = 128;
  int64_t seq_len = 512;
  uint64_t seed = 0;
  // calibration.moe: {calibrate_all_experts: BOOL, min_tokens: N, experts_per_pass: N}
  // (calibrate/moe_calibration.hpp).
  MoeCalibration moe;
  SourceMark mark;
};

struct Pipeline {
  std::filesystem::path file;      // "<string>" for string pipelines
  std::string source_text;         // the YAML as given (writers may store it as the recipe)
  std::filesystem::path base_dir;  // relative paths resolve here
  std::filesystem::path model_path;
  std::string loader;  // empty: detected by probe
  SourceMark loader_mark;
  std::vector<std::filesystem::path> plugin_paths;
  CalibrationSpec calibration;
  std::vector<QuantRule> rules;
  std::vector<TargetPattern> ignore;
  std::string output_format = "compressed-tensors";
  SourceMark format_mark;
  std::filesystem::path output_path;
  YAML::Node output_params;
  Kv validated_output_params;
  SourceMark output_mark;
  AccuracySpec accuracy;
  std::filesystem::path report_path;  // `report:` (HTML; the JSON beside it), "" = none
  // Not from the YAML: a run option (`--resume`). Continue a killed
  // calibrated run from its last finished layer (pipeline/resume_checkpoint.hpp).
  bool resume = false;
  // Not from the YAML: `--explain`: an `auto` run prints its decision and
  // evidence and writes no weights.
  bool explain_only = false;
  // Not from the YAML: dense tensors (by checkpoint name) the writer stores
  // in BF16 whatever their source dtype: the decision engine's bf16 rung.
  std::vector<std::string> bf16_tensors;
  bool has_automatic_rule() const;
};

// Parses and checks a pipeline; throws Error(XQ_ERR_INVALID_ARGUMENT) listing
// every problem. `display_name` names the source in messages.
Pipeline parse_pipeline_text(const std::string& yaml, const std::string& display_name,
                             const std::filesystem::path& base_dir);
Pipeline parse_pipeline_file(const std::filesystem::path& file);

// Checks plugin names and params against the loaded plugins; fills the
// validated_* Kvs (defaults included). Throws listing every problem.
void validate_with_plugins(Pipeline& pipeline, Runtime& runtime);

}  // namespace xquant
