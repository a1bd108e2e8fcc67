// pipeline_yaml.cpp: the fuzz target for pipeline files (runtime/pipeline:
// parse.cpp, yaml_checker.cpp, validate.cpp): parse_pipeline_text() as
// `xquant run` calls it, then the checks against the loaded plugins.
#include "fuzz_targets.hpp"

#include "fuzz_runtime.hpp"

#include "pipeline/pipeline.hpp"

#include <string>

#include <fstream>

namespace xquant::fuzz {

namespace {

// Relative paths in the pipelines resolve here: a folder holding an empty
// `model` folder and a `calib.txt`, so the seeds pass the parser's
// existence checks and the fuzzer can reach what comes after them.
const std::filesystem::path& base_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d = scratch_folder("-pipeline");
    std::filesystem::create_directories(d / "model");
    std::ofstream(d / "calib.txt") << "Once upon a time.\n";
    return d;
  }();
  return dir;
}

}  // namespace

void pipeline_yaml(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Pipeline p = parse_pipeline_text(text, "<fuzz>.yaml", base_dir());
  validate_with_plugins(p, fuzz_runtime());
  // Every target pattern is matched, as the runners match module names.
  for (const auto& rule : p.rules)
    for (const auto& t : rule.targets) (void)t.matches("model.layers.0.self_attn.q_proj");
  for (const auto& t : p.ignore) (void)t.matches("lm_head");
}

}  // namespace xquant::fuzz
