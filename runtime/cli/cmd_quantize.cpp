// cmd_quantize.cpp: `xquant quantize --model PATH --bits N ... --out DIR`,
// a shorthand that writes the equivalent pipeline YAML (shown with
// --print-pipeline) and runs it through the same validation and runner as
// `xquant run`.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/report_print.hpp"
#include "pipeline/pipeline.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdio>
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
            "`xquant run` takes (see --print-pipeline); defaults: rtn, 4 bits, symmetric,\n"
            "per channel unless --group-size, lm_head left dense, compressed-tensors output.",
            {{"model", "PATH", "checkpoint: HF folder, .safetensors or .gguf", true},
             {"out", "DIR", "output folder", true},
             {"algorithm", "NAME", "algorithm plugin (default rtn)"},
             {"bits", "N", "weight bits, 2..8 (default 4)"},
             {"group-size", "G", "quantize per group of G input columns (default: per output channel)"},
             {"strategy", "S", "tensor | channel | group (default: group with --group-size, else channel)"},
             {"asym", "", "asymmetric (with zero points); default symmetric"},
             {"scale-dtype", "T", "auto | float32 | float16 | bfloat16 (default auto = the model's dtype)"},
             {"w8a8", "MODE", "also quantize activations to int8: dynamic (per token at run time)"},
             {"targets", "LIST", "comma-separated targets (default Linear); 're:' prefix for regexes"},
             {"ignore", "LIST", "comma-separated modules left dense (default lm_head)"},
             {"format", "NAME", "output format plugin (default compressed-tensors)"},
             {"loader", "NAME", "loader plugin (default: detected)"},
             {"json", "", "print the report as JSON"},
             {"print-pipeline", "", "print the equivalent pipeline YAML and exit"}});
  if (!args.parse(argc, argv)) return 0;

  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "model" << YAML::Value << YAML::BeginMap << YAML::Key << "path" << YAML::Value
    << *args.get("model");
  if (auto l = args.get("loader")) y << YAML::Key << "loader" << YAML::Value << *l;
  y << YAML::EndMap;
  y << YAML::Key << "quantize" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  y << YAML::Key << "targets" << YAML::Value << YAML::Flow << split_list(args.get_or("targets", "Linear"));
  y << YAML::Key << "algorithm" << YAML::Value << args.get_or("algorithm", "rtn");
  y << YAML::Key << "weights" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "bits" << YAML::Value << args.get_int("bits", 4);
  y << YAML::Key << "symmetric" << YAML::Value << !args.flag("asym");
  if (auto s = args.get("strategy")) y << YAML::Key << "strategy" << YAML::Value << *s;
  if (auto g = args.get("group-size")) y << YAML::Key << "group_size" << YAML::Value << args.get_int("group-size", 0);
  if (auto t = args.get("scale-dtype")) y << YAML::Key << "scale_dtype" << YAML::Value << *t;
  y << YAML::EndMap;
  if (auto mode = args.get("w8a8")) {
    if (*mode != "dynamic" && *mode != "static")
      throw UsageError("--w8a8 takes 'dynamic' or 'static', got '" + *mode + "'");
    y << YAML::Key << "activations" << YAML::Value << YAML::BeginMap << YAML::Key << "bits" << YAML::Value << 8
      << YAML::Key << "strategy" << YAML::Value << (*mode == "dynamic" ? "token" : "tensor") << YAML::EndMap;
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
  return run_parsed_pipeline(options, pipeline, args.flag("json"));
}

}  // namespace xquant::cli
