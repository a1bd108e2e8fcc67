// test_cli_fp8.cpp: `xquant quantize --scheme FP8_DYNAMIC` end to end on
// stories260K-hf (a compressed-tensors float-quantized checkpoint that
// `xquant eval` then runs), the pipeline it builds, and the options it refuses.
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cli_fp8 {

namespace {

using xquant::test::run_process;
using xquant::test::TempDir;

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";
const std::string kVocab = std::string(XQUANT_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
const std::string kText = std::string(XQUANT_SHARED_DIR) + "/data/tinystories/tinystories_val.subset.txt";

}  // namespace

TEST(CliFp8, SchemeFp8DynamicQuantizesAndTheCheckpointEvaluates) {
  TempDir dir("xquant-cli-fp8");
  const fs::path out = dir / "fp8";
  auto r = run_process({XQUANT_CLI, "-q", "quantize", "--model", kModel, "--out", out.string(), "--scheme", "FP8_DYNAMIC",
                        "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto cfg = nlohmann::json::parse(xquant::test::read_file(out / "config.json"));
  const auto& qc = cfg["quantization_config"];
  EXPECT_EQ(qc["format"], "float-quantized");
  const auto& g = qc["config_groups"]["group_0"];
  EXPECT_EQ(g["weights"]["type"], "float");
  EXPECT_EQ(g["weights"]["strategy"], "channel");
  EXPECT_EQ(g["input_activations"]["type"], "float");
  EXPECT_EQ(g["input_activations"]["dynamic"], true);

  // inspect counts the F8_E4M3 weights as quantized, not dense (lm_head is tied here).
  auto i = run_process({XQUANT_CLI, "inspect", out.string()});
  ASSERT_EQ(i.exit_code, 0) << i.err;
  EXPECT_NE(i.out.find(", 0 Linear weights stored dense"), std::string::npos) << i.out.substr(0, 300);

  auto e = run_process({XQUANT_CLI, "-q", "eval", "--model", out.string(), "--tokenizer", kVocab, "--text", kText,
                        "--max-tokens", "1024", "--ctx", "256", "--json"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const auto ej = nlohmann::json::parse(e.out);
  auto f = run_process({XQUANT_CLI, "-q", "eval", "--model", kModel, "--tokenizer", kVocab, "--text", kText,
                        "--max-tokens", "1024", "--ctx", "256", "--json"});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  const double p8 = ej["perplexity"], p32 = nlohmann::json::parse(f.out)["perplexity"];
  std::printf("xquant eval (1024 tokens, ctx 256): F32 %.4f, FP8_DYNAMIC %.4f\n", p32, p8);
  EXPECT_LT(std::abs(p8 / p32 - 1.0), 0.03);
}

TEST(CliFp8, PipelineAndRefusedOptions) {
  auto r = run_process({XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--scheme", "FP8_DYNAMIC",
                        "--strategy", "tensor", "--print-pipeline"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("type: float"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("strategy: tensor"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("strategy: token"), std::string::npos) << r.out;
  for (std::vector<std::string> extra : {std::vector<std::string>{"--bits", "4"}, {"--w8a8", "dynamic"}, {"--asym"},
                                         {"--group-size", "32"}, {"--strategy", "group"}}) {
    std::vector<std::string> argv{XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--scheme", "FP8_DYNAMIC"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto b = run_process(argv);
    EXPECT_EQ(b.exit_code, 2) << extra[0] << ": " << b.err;
    EXPECT_NE(b.err.find("FP8_DYNAMIC"), std::string::npos) << b.err;
  }
  auto u = run_process({XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--scheme", "NVFP4"});
  EXPECT_EQ(u.exit_code, 2);
  EXPECT_NE(u.err.find("--scheme 'NVFP4' is not a known preset"), std::string::npos) << u.err;
  // FP8 with an algorithm that quantizes integers only is refused before any work.
  auto g = run_process({XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--scheme", "FP8_DYNAMIC",
                        "--algorithm", "auto", "--calibration", kText, "--accuracy-text", kText});
  EXPECT_EQ(g.exit_code, 2) << g.err;
  EXPECT_NE(g.err.find("type 'float'"), std::string::npos) << g.err;
}

}  // namespace test_cli_fp8
