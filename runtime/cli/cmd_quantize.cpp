// cmd_quantize.cpp: `xquant quantize --model PATH --bits N ... --out DIR`,
// a shorthand that writes the equivalent pipeline YAML (shown with
// --print-pipeline) and runs it through the same validation and runner as
// `xquant run`.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/run_parsed_pipeline.hpp"
#include "pipeline/pipeline.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <optional>

#include <fmt/format.h>
#include <filesystem>
#include <sstream>

namespace xquant::cli {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int cmd_quantize(const RuntimeOptions& options, int argc, char** argv) {
  Args args("quantize",
            "Quantize a model's Linear weights and write a checkpoint. Builds the same pipeline\n"
            "`xquant run` takes (see --print-pipeline). Defaults per algorithm (reference section B):\n"
            "  rtn          4 bits, symmetric, per channel unless --group-size; data-free\n"
            "  gptq         4 bits, symmetric, group 128, damp 0.01, block 128; --act-order to reorder\n"
            "  awq          4 bits, asymmetric, group 128, grid 20, duo scaling, clip search\n"
            "  smoothquant  W8A8: int8 per-channel weights, int8 dynamic per-token activations, alpha 0.5\n"
            "gptq/awq/smoothquant need --calibration FILE (default 128 samples x 512 tokens, seed 0).\n"
            "--w8a8 dynamic|static makes any algorithm W8A8 (8-bit per-channel weights; static needs calibration).\n"
            "lm_head is left dense; the output format is compressed-tensors.",
            {{"model", "PATH", "checkpoint: HF folder, .safetensors or .gguf", true},
             {"out", "DIR", "output folder", true},
             {"algorithm", "NAME", "rtn | gptq | awq | smoothquant | any algorithm plugin (default rtn)"},
             {"bits", "N", "weight bits, 2..8"},
             {"group-size", "G", "quantize per group of G input columns"},
             {"strategy", "S", "tensor | channel | group"},
             {"asym", "", "asymmetric (zero points)"},
             {"sym", "", "symmetric (no zero points)"},
             {"scale-dtype", "T", "auto | float32 | float16 | bfloat16 (default auto = the model's dtype)"},
             {"w8a8", "MODE", "also quantize activations to int8: dynamic (per token) or static (per tensor)"},
             {"calibration", "FILE", "calibration text (needed by gptq, awq, smoothquant, static W8A8)"},
             {"samples", "N", "calibration windows (default 128)"},
             {"seq-len", "L", "tokens per calibration window (default 512)"},
             {"seed", "S", "calibration sampling seed (default 0)"},
             {"tokenizer", "PATH", "calibration: take the vocabulary from this checkpoint (e.g. a GGUF)"},
             {"act-order", "", "gptq: quantize columns in decreasing Hessian-diagonal order"},
             {"damp", "F", "gptq: dampening fraction of the mean Hessian diagonal (default 0.01)"},
             {"alpha", "F", "smoothquant: migration strength (default 0.5)"},
             {"targets", "LIST", "comma-separated targets (default Linear); 're:' prefix for regexes"},
             {"ignore", "LIST", "comma-separated modules left dense (default lm_head)"},
             {"format", "NAME", "output format plugin (default compressed-tensors)"},
             {"loader", "NAME", "loader plugin (default: detected)"},
             {"json", "", "print the report as JSON"},
             {"resume", "", "continue a killed calibrated run from its last finished layer (docs/pipeline.md)"},
             {"print-pipeline", "", "print the equivalent pipeline YAML and exit"}});
  if (!args.parse(argc, argv)) return 0;

  const std::string algorithm = args.get_or("algorithm", "rtn");
  const bool data_free = algorithm == "rtn";
  auto w8a8 = args.get("w8a8");
  if (w8a8 && *w8a8 != "dynamic" && *w8a8 != "static")
    throw UsageError("--w8a8 takes 'dynamic' or 'static', got '" + *w8a8 + "'");
  if (args.flag("asym") && args.flag("sym")) throw UsageError("--asym and --sym contradict each other");
  const bool smooth = algorithm == "smoothquant";
  const bool w8 = w8a8 || smooth;
  // Per-algorithm defaults (section B of the reference).
  long long bits = args.get_int("bits", w8 ? 8 : 4);
  bool symmetric = algorithm == "awq" ? false : true;
  if (args.flag("asym")) symmetric = false;
  if (args.flag("sym")) symmetric = true;
  std::optional<long long> group;
  if (args.get("group-size")) group = args.get_int("group-size", 0);
  else if ((algorithm == "gptq" || algorithm == "awq") && !w8 && !args.get("strategy")) group = 128;
  if (w8 && bits != 8) throw UsageError("W8A8 (--w8a8 or smoothquant) needs --bits 8");
  const bool needs_calibration = !data_free || (w8a8 && *w8a8 == "static");
  if (needs_calibration && !args.get("calibration"))
    throw UsageError(fmt::format("{} needs --calibration FILE (calibration text)",
                                 data_free ? std::string("--w8a8 static") : "algorithm '" + algorithm + "'"));

  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "path" << YAML::Value
    << *args.get("model");
  if (auto l = args.get("loader")) y << YAML::Key << "loader" << YAML::Value << *l;
  y << YAML::EndMap;
  if (auto cal = args.get("calibration")) {
    y << YAML::Key << "calibration" << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "text" << YAML::Value << *cal;
    y << YAML::Key << "samples" << YAML::Value << args.get_int("samples", 128);
    y << YAML::Key << "seq_len" << YAML::Value << args.get_int("seq-len", 512);
    y << YAML::Key << "seed" << YAML::Value << args.get_int("seed", 0);
    if (auto t = args.get("tokenizer")) y << YAML::Key << "tokenizer" << YAML::Value << *t;
    y << YAML::EndMap;
  }
  y << YAML::Key << "quantize" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  y << YAML::Key << "targets" << YAML::Value << YAML::Flow << split_list(args.get_or("targets", "Linear"));
  y << YAML::Key << "algorithm" << YAML::Value << algorithm;
  y << YAML::Key << "weights" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "bits" << YAML::Value << bits;
  y << YAML::Key << "symmetric" << YAML::Value << symmetric;
  if (auto s = args.get("strategy")) y << YAML::Key << "strategy" << YAML::Value << *s;
  if (group) y << YAML::Key << "group_size" << YAML::Value << *group;
  if (auto t = args.get("scale-dtype")) y << YAML::Key << "scale_dtype" << YAML::Value << *t;
  y << YAML::EndMap;
  if (w8) {
    bool dynamic = !w8a8 || *w8a8 == "dynamic";
    y << YAML::Key << "activations" << YAML::Value << YAML::BeginMap << YAML::Key << "bits" << YAML::Value << 8
      << YAML::Key << "strategy" << YAML::Value << (dynamic ? "token" : "tensor") << YAML::EndMap;
  }
  std::vector<std::pair<std::string, std::string>> params;
  if (args.flag("act-order")) params.emplace_back("act_order", "true");
  if (auto d = args.get("damp")) params.emplace_back("damp", *d);
  if (auto a = args.get("alpha")) params.emplace_back("alpha", *a);
  if (!params.empty()) {
    y << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : params) y << YAML::Key << k << YAML::Value << v;
    y << YAML::EndMap;
  }
  y << YAML::EndMap << YAML::EndSeq;
  y << YAML::Key << "ignore" << YAML::Value << YAML::Flow << split_list(args.get_or("ignore", "lm_head"));
  y << YAML::Key << "output" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "format" << YAML::Value << args.get_or("format", "compressed-tensors");
  y << YAML::Key << "path" << YAML::Value << *args.get("out");
  y << YAML::EndMap << YAML::EndMap;

  if (args.flag("print-pipeline")) {
    std::printf("%s\n", y.c_str());
    return 0;
  }
  Pipeline pipeline = parse_pipeline_text(y.c_str(), "<xquant quantize options>", std::filesystem::current_path());
  pipeline.resume = args.flag("resume");
  return run_parsed_pipeline(options, pipeline, args.flag("json"));
}

}  // namespace xquant::cli
