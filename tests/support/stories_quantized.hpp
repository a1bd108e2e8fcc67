// stories_quantized.hpp: the engine tests' shared fixture for quantized
// stories260K checkpoints: stories260K-hf quantized with RTN through the
// public C API into a compressed-tensors folder under the temp directory, and
// the token ids of the TinyStories text the perplexity checks score.
// Tests that include it define XQUANT_SHARED_DIR (tests/CMakeLists.txt).
#pragma once

#include "engine/evaluate.hpp"
#include "engine/model.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace xquant::test {

inline const std::filesystem::path kSharedDir = XQUANT_SHARED_DIR;

// `scheme_yaml` is the rule's scheme lines (weights:/activations:, indented
// for the rule); the output lands in <tmp>/<folder>_<pid>/<name>.
inline std::filesystem::path quantize_stories_rtn(const std::string& folder, const std::string& name,
                                                  const std::string& scheme_yaml) {
  namespace fs = std::filesystem;
  fs::path out = fs::temp_directory_path() / (folder + "_" + std::to_string(::getpid())) / name;
  fs::remove_all(out);
  std::string yaml = "model:\n  path: " + (kSharedDir / "models/stories260K-hf").string() +
                     "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n" + scheme_yaml +
                     "ignore: [lm_head]\noutput:\n  format: compressed-tensors\n  path: " + out.string() + "\n";
  xq_runtime* rt = nullptr;
  EXPECT_EQ(xq_runtime_create(nullptr, &rt), XQ_OK) << xq_last_error();
  EXPECT_EQ(xq_run_pipeline_string(rt, yaml.c_str(), nullptr), XQ_OK) << xq_last_error();
  xq_runtime_destroy(rt);
  return out;
}

// The first `max_tokens` ids of the TinyStories validation subset, as `m`
// tokenizes it.
inline std::vector<int32_t> tinystories_eval_ids(Model& m, int64_t max_tokens = 4096) {
  std::ifstream in(kSharedDir / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  return eval_tokens(m, ss.str(), max_tokens);
}

}  // namespace xquant::test
