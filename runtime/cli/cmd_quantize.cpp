// cmd_quantize.cpp: `xquant quantize --model PATH --out DIR ...`, a
// shorthand that writes the equivalent pipeline YAML (shown with
// --print-pipeline) and runs it through the same validation and runner as
// `xquant run`.
//
// It knows no algorithm by name: the plugin says which scheme it is used
// with by default (scheme-default: capabilities, docs/abi.md), which params
// it takes and their defaults (xq_param_spec), and whether it needs
// calibration data (its `needs` bits, asked as the runner asks them).
#include "cli/algorithm_info.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/report_print.hpp"
#include "core/error.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/stages.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <optional>

#include <fmt/format.h>
#include <filesystem>
#include <sstream>

namespace xquant::cli {

namespace {

// The weight scheme when neither the user nor the algorithm says otherwise.
constexpr int kDefaultBits = 4;
// `--algorithm auto`: the decision engine (runtime/decide/), not a plugin.
constexpr const char* kAutomatic = "auto";
// Its default scheme: the W4 g128 symmetric.
constexpr long long kAutomaticGroupSize = 128;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<OptionSpec> quantize_options(const PluginRegistry& plugins) {
  std::vector<std::string> algorithms;
  for (LoadedPlugin* p : plugins.of_kind(XQ_PLUGIN_ALGORITHM)) algorithms.push_back(p->name());
  const CalibrationSpec calibration_defaults;
  return {{"model", "PATH", "checkpoint: HF folder, .safetensors or .gguf", true},
          {"out", "DIR", "output folder", true},
          {"algorithm", "NAME", fmt::format("algorithm plugin: {} | auto (default rtn; auto: docs/decide.md)",
                                            fmt::join(algorithms, " | "))},
          {"bits", "N", fmt::format("weight bits, 2..8 (default: the algorithm's, else {}; 8 with W8A8)", kDefaultBits)},
          {"group-size", "G", "quantize per group of G input columns (default: the algorithm's, else per channel)"},
          {"strategy", "S", "tensor | channel | group"},
          {"asym", "", "asymmetric (zero points)"},
          {"sym", "", "symmetric (no zero points)"},
          {"scale-dtype", "T", "auto | float32 | float16 | bfloat16 (default auto = the model's dtype)"},
          {"w8a8", "MODE", "also quantize activations to int8: dynamic (per token) or static (per tensor)"},
          {"scheme", "NAME", "a compressed-tensors preset instead of --bits/--w8a8: FP8_DYNAMIC (FP8 E4M3 weights "
                             "per channel, or per tensor with --strategy tensor; dynamic per-token FP8 activations) or W4AFP8 (int4 "
                             "symmetric weights, group 128; dynamic per-token FP8 activations)"},
          {"calibration", "FILE", "calibration text (needed when the algorithm needs statistics, and by static W8A8)"},
          {"samples", "N", fmt::format("calibration windows (default {})", calibration_defaults.samples)},
          {"seq-len", "L", fmt::format("tokens per calibration window (default {})", calibration_defaults.seq_len)},
          {"seed", "S", fmt::format("calibration sampling seed (default {})", calibration_defaults.seed)},
          {"tokenizer", "PATH", "calibration: take the vocabulary from this checkpoint (e.g. a GGUF)"},
          {"param", "K=V,...", "algorithm params (listed above with their defaults); may be repeated", false, 0, true},
          {"act-order", "", "shorthand for --param act_order=true (gptq)"},
          {"damp", "F", "shorthand for --param damp=F (gptq)"},
          {"alpha", "F", "shorthand for --param alpha=F (smoothquant)"},
          {"targets", "LIST", "comma-separated targets (default Linear); 're:' prefix for regexes"},
          {"ignore", "LIST", "comma-separated modules left dense (default lm_head and MoE routers / shared_expert_gate)"},
          {"format", "NAME", "output format plugin (default compressed-tensors)"},
          {"loader", "NAME", "loader plugin (default: detected)"},
          {"json", "", "print the report as JSON"},
          {"resume", "", "continue a killed calibrated run from its last finished layer (docs/pipeline.md)"},
          {"accuracy-text", "FILE", "--algorithm auto: held-out evaluation text (never the calibration text)"},
          {"max-increase", "X", "--algorithm auto: accuracy target, e.g. 1% (ppl, relative) or 0.01 (kld, absolute)"},
          {"metric", "M", "--algorithm auto: kld (default) | ppl"},
          {"fallback", "LIST", "--algorithm auto: the ladder a sensitive layer group climbs (default int8,bf16)"},
          {"max-tokens", "N", "--algorithm auto: evaluation tokens (default 32768)"},
          {"max-bytes", "N", "--algorithm auto: the most weight bytes the quantized Linears may take (the fallback's byte budget)"},
          {"compare-baseline", "", "--algorithm auto: also search the plain weight-error fallback ranking (for the report)"},
          {"report", "FILE", "--algorithm auto: the HTML report (JSON beside it; default OUT/decision-report.html)"},
          {"candidates", "LIST", "--algorithm auto: measure only these algorithms (e.g. rtn,smoothquant; chains as smoothquant+gptq)"},
          {"explain", "", "--algorithm auto: print the decision and its evidence; write no weights"},
          {"print-pipeline", "", "print the equivalent pipeline YAML and exit"}};
}

std::string quantize_summary(const PluginRegistry& plugins) {
  return "Quantize a model's Linear weights and write a checkpoint. Builds the same pipeline\n"
         "`xquant run` takes (see --print-pipeline and docs/pipeline.md). The algorithm plugin\n"
         "decides its default scheme, its params and whether it needs --calibration.\n"
         "--w8a8 dynamic|static makes any algorithm W8A8 (8-bit per-channel weights; static needs calibration).\n"
         "lm_head is left dense; the output format is compressed-tensors.\n\n"
         "algorithms (from the loaded plugins; --plugin-path DIR adds more):\n" +
         describe_algorithms(plugins);
}

// The rule's weight and activation scheme: the user's options, else the
// algorithm's declared defaults, else per-channel symmetric kDefaultBits.
struct Scheme {
  std::string type = "int";  // int | float (FP8)
  long long bits = kDefaultBits;
  std::optional<bool> symmetric;
  std::optional<long long> group_size;
  std::optional<std::string> activations;  // "dynamic" | "static"
  std::string activation_type;             // empty: the weights' type; "float" beside int4 weights: W4AFP8
};

// --scheme FP8_DYNAMIC (compressed-tensors' preset of that name): FP8 weights
// per channel (or --strategy tensor), dynamic per-token FP8 activations.
Scheme fp8_dynamic_scheme(const Args& args) {
  for (const char* o : {"w8a8", "bits", "group-size"})
    if (args.get(o)) throw UsageError(fmt::format("--scheme FP8_DYNAMIC sets the scheme; drop --{}", o));
  if (args.flag("asym")) throw UsageError("--scheme FP8_DYNAMIC is symmetric; drop --asym");
  if (auto st = args.get("strategy"); st && *st == "group")
    throw UsageError("--scheme FP8_DYNAMIC takes --strategy channel or tensor");
  Scheme s;
  s.type = "float";
  s.bits = 8;
  s.activations = "dynamic";
  return s;
}

// --scheme W4AFP8 (compressed-tensors' preset of that name, vLLM's
// CompressedTensorsW4A8Fp8): int4 symmetric weights in groups of 128 (or
// --group-size N, or --strategy channel), dynamic per-token FP8 activations.
Scheme w4afp8_scheme(const Args& args) {
  for (const char* o : {"w8a8", "bits"})
    if (args.get(o)) throw UsageError(fmt::format("--scheme W4AFP8 sets the scheme; drop --{}", o));
  if (args.flag("asym")) throw UsageError("--scheme W4AFP8 is symmetric (vLLM's W4A8-FP8 kernel has no zero points); drop --asym");
  if (auto st = args.get("strategy"); st && *st == "tensor")
    throw UsageError("--scheme W4AFP8 takes --strategy group or channel");
  Scheme s;
  s.bits = 4;
  s.symmetric = true;
  if (args.get("group-size")) s.group_size = args.get_int("group-size", 0);
  else if (!args.get("strategy") || *args.get("strategy") == "group") s.group_size = 128;
  s.activations = "dynamic";
  s.activation_type = "float";
  return s;
}

Scheme resolve_scheme(const Args& args, const SchemeDefaults& plugin) {
  if (auto name = args.get("scheme")) {
    if (*name == "FP8_DYNAMIC" || *name == "fp8_dynamic") return fp8_dynamic_scheme(args);
    if (*name == "W4AFP8" || *name == "w4afp8") return w4afp8_scheme(args);
    throw UsageError(fmt::format("--scheme '{}' is not a known preset (FP8_DYNAMIC, W4AFP8)", *name));
  }
  Scheme s;
  if (plugin.type) s.type = *plugin.type;
  if (auto w = args.get("w8a8")) {
    if (*w != "dynamic" && *w != "static") throw UsageError("--w8a8 takes 'dynamic' or 'static', got '" + *w + "'");
    s.activations = *w;
  } else {
    s.activations = plugin.activations;
  }
  if (args.flag("asym") && args.flag("sym")) throw UsageError("--asym and --sym contradict each other");
  const bool w8 = s.activations.has_value();
  s.bits = args.get_int("bits", w8 || s.type == "float" ? 8 : plugin.bits.value_or(kDefaultBits));
  if (w8 && s.bits != 8)
    throw UsageError(fmt::format("W8A8 ({}) needs --bits 8", args.get("w8a8") ? "--w8a8" : "the algorithm's default"));
  s.symmetric = plugin.symmetric;
  if (args.flag("asym")) s.symmetric = false;
  if (args.flag("sym")) s.symmetric = true;
  if (args.get("group-size")) s.group_size = args.get_int("group-size", 0);
  else if (!w8 && !args.get("strategy")) s.group_size = plugin.group_size;
  return s;
}

std::vector<std::pair<std::string, std::string>> algorithm_params(const Args& args) {
  std::vector<std::pair<std::string, std::string>> params;
  if (auto list = args.get("param")) params = split_params(*list);
  if (args.flag("act-order")) params.emplace_back("act_order", "true");
  if (auto d = args.get("damp")) params.emplace_back("damp", *d);
  if (auto a = args.get("alpha")) params.emplace_back("alpha", *a);
  return params;
}

std::string pipeline_yaml(const Args& args, const std::string& algorithm, const Scheme& scheme) {
  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "path" << YAML::Value
    << *args.get("model");
  if (auto l = args.get("loader")) y << YAML::Key << "loader" << YAML::Value << *l;
  y << YAML::EndMap;
  if (auto cal = args.get("calibration")) {
    y << YAML::Key << "calibration" << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "text" << YAML::Value << *cal;
    if (args.get("samples")) y << YAML::Key << "samples" << YAML::Value << args.get_int("samples", 0);
    if (args.get("seq-len")) y << YAML::Key << "seq_len" << YAML::Value << args.get_int("seq-len", 0);
    if (args.get("seed")) y << YAML::Key << "seed" << YAML::Value << args.get_int("seed", 0);
    if (auto t = args.get("tokenizer")) y << YAML::Key << "tokenizer" << YAML::Value << *t;
    y << YAML::EndMap;
  }
  y << YAML::Key << "quantize" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  y << YAML::Key << "targets" << YAML::Value << YAML::Flow << split_list(args.get_or("targets", "Linear"));
  y << YAML::Key << "algorithm" << YAML::Value << algorithm;
  y << YAML::Key << "weights" << YAML::Value << YAML::BeginMap;
  if (scheme.type != "int") y << YAML::Key << "type" << YAML::Value << scheme.type;
  y << YAML::Key << "bits" << YAML::Value << scheme.bits;
  if (scheme.symmetric) y << YAML::Key << "symmetric" << YAML::Value << *scheme.symmetric;
  if (auto s = args.get("strategy")) y << YAML::Key << "strategy" << YAML::Value << *s;
  if (scheme.group_size) y << YAML::Key << "group_size" << YAML::Value << *scheme.group_size;
  if (auto t = args.get("scale-dtype")) y << YAML::Key << "scale_dtype" << YAML::Value << *t;
  y << YAML::EndMap;
  if (scheme.activations) {
    y << YAML::Key << "activations" << YAML::Value << YAML::BeginMap;
    if (!scheme.activation_type.empty()) y << YAML::Key << "type" << YAML::Value << scheme.activation_type;
    y << YAML::Key << "bits" << YAML::Value << 8
      << YAML::Key << "strategy" << YAML::Value << (*scheme.activations == "dynamic" ? "token" : "tensor")
      << YAML::EndMap;
  }
  auto params = algorithm_params(args);
  if (auto c = args.get("candidates")) {  // only with --algorithm auto (require_automatic_options)
    if (!params.empty())
      throw UsageError("--param, --act-order, --damp and --alpha set one algorithm's params; --algorithm auto takes none");
    y << YAML::Key << "params" << YAML::Value << YAML::BeginMap << YAML::Key << "candidates" << YAML::Value
      << YAML::Flow << split_list(*c) << YAML::EndMap;
  } else if (!params.empty()) {
    y << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : params) y << YAML::Key << k << YAML::Value << v;
    y << YAML::EndMap;
  }
  y << YAML::EndMap << YAML::EndSeq;
  // Mixture-of-Experts routers and Qwen2-MoE's shared-expert gate stay dense
  // unless --ignore says otherwise (they match nothing in a dense model).
  std::vector<std::string> ignore = split_list(args.get_or("ignore", "lm_head"));
  if (!args.get("ignore"))
    ignore.insert(ignore.end(), {"re:.*mlp\\.gate$", "re:.*block_sparse_moe\\.gate$", "re:.*shared_expert_gate$"});
  y << YAML::Key << "ignore" << YAML::Value << YAML::Flow << ignore;
  if (algorithm == kAutomatic && args.get("accuracy-text")) {
    y << YAML::Key << "accuracy" << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "text" << YAML::Value << *args.get("accuracy-text");
    if (auto m = args.get("metric")) y << YAML::Key << "metric" << YAML::Value << *m;
    if (auto m = args.get("max-increase")) y << YAML::Key << "max_increase" << YAML::Value << *m;
    if (auto f = args.get("fallback")) y << YAML::Key << "fallback" << YAML::Value << YAML::Flow << split_list(*f);
    if (args.get("max-tokens")) y << YAML::Key << "max_tokens" << YAML::Value << args.get_int("max-tokens", 0);
    if (args.get("max-bytes")) y << YAML::Key << "max_bytes" << YAML::Value << args.get_int("max-bytes", 0);
    if (args.flag("compare-baseline")) y << YAML::Key << "compare_baseline" << YAML::Value << true;
    y << YAML::EndMap;
  }
  if (auto r = args.get("report")) y << YAML::Key << "report" << YAML::Value << *r;
  y << YAML::Key << "output" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "format" << YAML::Value << args.get_or("format", "compressed-tensors");
  y << YAML::Key << "path" << YAML::Value << *args.get("out");
  y << YAML::EndMap << YAML::EndMap;
  return y.c_str();
}

// Parses and validates the generated pipeline. Everything in it came from the
// options, so what the checks refuse is a usage error.
Pipeline checked_pipeline(const std::string& yaml, Runtime& runtime) {
  try {
    Pipeline p = parse_pipeline_text(yaml, "<xquant quantize options>", std::filesystem::current_path());
    validate_with_plugins(p, runtime);
    return p;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

// The runner's own question (rule_needs), asked before any heavy work.
void require_calibration_if_needed(Runtime& runtime, const Pipeline& p, const std::string& algorithm) {
  if (p.calibration.enabled) return;
  for (const auto& rule : p.rules) {
    if (rule_needs(runtime, rule) != 0)
      throw UsageError(fmt::format("algorithm '{}' needs calibration statistics: give --calibration FILE (text)", algorithm));
    if (rule.activations.enabled && !rule.activations.dynamic)
      throw UsageError("static activation scales (--w8a8 static) need --calibration FILE (text)");
  }
}

// The decision engine's options make sense only with --algorithm auto, and
// it measures candidates on calibration data.
void require_automatic_options(const Args& args, bool automatic) {
  for (const char* o : {"accuracy-text", "max-increase", "metric", "fallback", "max-tokens", "max-bytes", "compare-baseline",
                        "candidates", "report", "explain"})
    if (!automatic && (args.get(o) || args.flag(o)))
      throw UsageError(fmt::format("--{} is an option of --algorithm auto", o));
  if (automatic && !args.get("calibration"))
    throw UsageError("--algorithm auto measures every candidate on calibration data: give --calibration FILE (text)");
  if (automatic && !args.get("accuracy-text"))
    for (const char* o : {"max-increase", "metric", "fallback", "max-tokens", "max-bytes", "compare-baseline"})
      if (args.get(o) || args.flag(o)) throw UsageError(fmt::format("--{} needs --accuracy-text FILE (held-out text)", o));
}

}  // namespace

int cmd_quantize(const RuntimeOptions& options, int argc, char** argv) {
  Runtime runtime(options);
  Args args("quantize", quantize_summary(runtime.plugins()), quantize_options(runtime.plugins()));
  if (!args.parse(argc, argv)) return 0;

  const std::string algorithm = args.get_or("algorithm", "rtn");
  const bool automatic = algorithm == kAutomatic;
  require_automatic_options(args, automatic);
  SchemeDefaults defaults;
  if (automatic) defaults.group_size = kAutomaticGroupSize;
  else defaults = scheme_defaults_of(require_algorithm(runtime.plugins(), algorithm));
  const Scheme scheme = resolve_scheme(args, defaults);
  const std::string yaml = pipeline_yaml(args, algorithm, scheme);
  Pipeline pipeline = checked_pipeline(yaml, runtime);
  require_calibration_if_needed(runtime, pipeline, algorithm);

  if (args.flag("print-pipeline")) {
    std::printf("%s\n", yaml.c_str());
    return 0;
  }
  pipeline.resume = args.flag("resume");
  pipeline.explain_only = args.flag("explain");
  RunReport report = run_pipeline(runtime, pipeline);
  if (!pipeline.explain_only) print_report(report, args.flag("json"));
  return 0;
}

}  // namespace xquant::cli
