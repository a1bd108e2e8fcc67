// test_cli_w4afp8.cpp: `xquant quantize --scheme W4AFP8` end to end on
// stories260K-hf with RTN and GPTQ: a compressed-tensors pack-quantized
// checkpoint whose config groups carry float (FP8) dynamic per-token input
// activations, which `xquant eval` then runs with the activations rounded to
// E4M3; the pipeline the option builds, and the combinations it refuses.
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
namespace test_cli_w4afp8 {

namespace {

using xquant::test::run_process;
using xquant::test::TempDir;

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";
const std::string kVocab = std::string(XQUANT_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
const std::string kText = std::string(XQUANT_SHARED_DIR) + "/data/tinystories/tinystories_val.subset.txt";

double perplexity_of(const std::string& model) {
  auto e = run_process({XQUANT_CLI, "-q", "eval", "--model", model, "--tokenizer", kVocab, "--text", kText,
                        "--max-tokens", "1024", "--ctx", "256", "--json"});
  EXPECT_EQ(e.exit_code, 0) << e.err;
  return e.exit_code == 0 ? nlohmann::json::parse(e.out)["perplexity"].get<double>() : NAN;
}

void expect_w4afp8_config(const fs::path& out) {
  const auto cfg = nlohmann::json::parse(xquant::test::read_file(out / "config.json"));
  const auto& qc = cfg["quantization_config"];
  EXPECT_EQ(qc["format"], "pack-quantized");
  ASSERT_FALSE(qc["config_groups"].empty());
  for (const auto& [name, g] : qc["config_groups"].items()) {
    SCOPED_TRACE(name);
    EXPECT_EQ(g["weights"]["type"], "int");
    EXPECT_EQ(g["weights"]["num_bits"], 4);
    EXPECT_EQ(g["weights"]["symmetric"], true);
    EXPECT_EQ(g["input_activations"]["type"], "float");
    EXPECT_EQ(g["input_activations"]["num_bits"], 8);
    EXPECT_EQ(g["input_activations"]["strategy"], "token");
    EXPECT_EQ(g["input_activations"]["dynamic"], true);
  }
}

}  // namespace

TEST(CliW4Afp8, RtnAndGptqWriteW4Afp8AndTheCheckpointsEvaluate) {
  TempDir dir("xquant-cli-w4afp8");
  // stories260K's 64 columns: groups of 32 (the preset's 128 would be one per row).
  const std::vector<std::string> common{"--group-size", "32", "--json"};
  auto quantize = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> argv{XQUANT_CLI, "-q", "quantize", "--model", kModel, "--out", (dir / name).string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), common.begin(), common.end());
    auto r = run_process(argv);
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    return dir / name;
  };
  const fs::path rtn = quantize("rtn", {"--scheme", "W4AFP8"});
  const fs::path gptq = quantize("gptq", {"--scheme", "W4AFP8", "--algorithm", "gptq", "--calibration", kText,
                                          "--tokenizer", kVocab, "--samples", "8", "--seq-len", "128"});
  const fs::path w4a16 = quantize("w4a16", {"--bits", "4", "--sym"});
  expect_w4afp8_config(rtn);
  expect_w4afp8_config(gptq);

  const double p32 = perplexity_of(kModel), p16 = perplexity_of(w4a16.string()), pr = perplexity_of(rtn.string()),
               pg = perplexity_of(gptq.string());
  std::printf("xquant eval (1024 tokens, ctx 256): F32 %.4f, W4A16 rtn %.4f, W4AFP8 rtn %.4f, W4AFP8 gptq %.4f\n", p32,
              p16, pr, pg);
  // Same weights as W4A16 RTN; E4M3 activations add a little error, not none.
  EXPECT_NE(pr, p16);
  EXPECT_LT(std::abs(pr / p16 - 1.0), 0.03);
  EXPECT_LT(pg / p32, pr / p32 + 0.05);
}

TEST(CliW4Afp8, PipelineAndRefusedOptions) {
  auto r = run_process({XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--scheme", "W4AFP8", "--print-pipeline"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("bits: 4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("group_size: 128"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("symmetric: true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("type: float"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("strategy: token"), std::string::npos) << r.out;
  for (std::vector<std::string> extra : {std::vector<std::string>{"--bits", "8"}, {"--w8a8", "dynamic"}, {"--asym"},
                                         {"--strategy", "tensor"}}) {
    std::vector<std::string> argv{XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--scheme", "W4AFP8"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto b = run_process(argv);
    EXPECT_EQ(b.exit_code, 2) << extra[0] << ": " << b.err;
    EXPECT_NE(b.err.find("W4AFP8"), std::string::npos) << b.err;
  }
}

// The YAML form: FP8 activations beside int weights are W4AFP8 only.
TEST(CliW4Afp8, PipelineFileRefusesWhatW4Afp8IsNot) {
  TempDir dir("xquant-cli-w4afp8-yaml");
  auto run_yaml = [&](const std::string& weights, const std::string& acts) {
    const fs::path y = dir / "p.yaml";
    xquant::test::write_file(y, "model: {path: " + kModel + "}\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n"
                                "    weights: " + weights + "\n    activations: " + acts +
                                "\nignore: [lm_head]\noutput: {format: compressed-tensors, path: " +
                                (dir / "out").string() + "}\n");
    return run_process({XQUANT_CLI, "-q", "run", y.string(), "--check"});
  };
  const std::string fp8 = "{type: float, bits: 8, strategy: token, dynamic: true}";
  auto ok = run_yaml("{bits: 4, group_size: 32, symmetric: true}", fp8);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  struct Bad {
    std::string weights, acts, says;
  };
  for (const Bad& b : {Bad{"{bits: 8, symmetric: true}", fp8, "W4AFP8: the weights must be 4 bits, not 8"},
                       Bad{"{bits: 4, group_size: 32, symmetric: false}", fp8, "needs symmetric weights"},
                       Bad{"{bits: 4, strategy: tensor, symmetric: true}", fp8, "take strategy 'group' or 'channel'"},
                       Bad{"{bits: 4, group_size: 32, symmetric: true}", "{type: float, bits: 8, strategy: tensor, dynamic: false}",
                           "static FP8 activation scales are not supported"},
                       Bad{"{bits: 4, group_size: 32, symmetric: true}", "{type: int, bits: 8, strategy: token}",
                           "needs 8-bit weights"}}) {
    auto r = run_yaml(b.weights, b.acts);
    EXPECT_NE(r.exit_code, 0) << b.weights << " " << b.acts;
    EXPECT_NE(r.err.find(b.says), std::string::npos) << r.err;
  }
}

}  // namespace test_cli_w4afp8
