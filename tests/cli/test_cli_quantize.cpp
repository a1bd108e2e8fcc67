// test_cli_quantize.cpp: `xquant quantize` asks the algorithm plugin what it
// needs and how it is used by default instead of knowing it by name. The
// SDK's out-of-tree example rtn-mse (built by this folder's CMakeLists into
// its own plugin folder) is data-free, so it runs without --calibration;
// the in-tree plugins' declared scheme defaults shape the pipeline.
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cli_quantize {

namespace {

using xquant::test::run_process;
using xquant::test::TempDir;

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";
const std::string kText = std::string(XQUANT_SHARED_DIR) + "/data/tinystories/tinystories_val.subset.txt";

std::string printed_pipeline(const std::vector<std::string>& extra) {
  std::vector<std::string> argv{XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--print-pipeline"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = run_process(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(CliQuantize, DataFreePluginOutOfTreeRunsWithoutCalibration) {
  TempDir dir("xquant-cli-rtn-mse");
  auto r = run_process({XQUANT_CLI, "-q", "--plugin-path", XQUANT_TEST_PLUGIN_DIR, "quantize", "--model", kModel,
                        "--out", (dir / "out").string(), "--algorithm", "rtn-mse", "--group-size", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("rtn-mse"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "out" / "model.safetensors"));
}

TEST(CliQuantize, HelpListsTheLoadedAlgorithmsWithTheirDeclaredParams) {
  auto r = run_process({XQUANT_CLI, "--plugin-path", XQUANT_TEST_PLUGIN_DIR, "quantize", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("rtn-mse"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("grid=20: number of shrink factors"), std::string::npos) << r.out;  // rtn-mse's spec
  EXPECT_NE(r.out.find("damp=0.01: dampening"), std::string::npos) << r.out;                // gptq's spec
}

TEST(CliQuantize, TypoInAlgorithmIsAUsageErrorWithTheNearestName) {
  auto r = run_process({XQUANT_CLI, "quantize", "--model", kModel, "--out", "o", "--algorithm", "gtpq"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown algorithm 'gtpq'; did you mean 'gptq'?"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("calibration"), std::string::npos) << r.err;
}

TEST(CliQuantize, SchemeDefaultsComeFromTheAlgorithmPlugin) {
  // awq declares asymmetric group 128; gptq group 128; smoothquant W8A8
  // with dynamic activations; rtn nothing (per channel, symmetric, 4 bits).
  std::string awq = printed_pipeline({"--algorithm", "awq", "--calibration", kText});
  EXPECT_NE(awq.find("symmetric: false"), std::string::npos) << awq;
  EXPECT_NE(awq.find("group_size: 128"), std::string::npos) << awq;
  std::string gptq = printed_pipeline({"--algorithm", "gptq", "--calibration", kText});
  EXPECT_NE(gptq.find("group_size: 128"), std::string::npos) << gptq;
  EXPECT_EQ(gptq.find("symmetric: false"), std::string::npos) << gptq;
  std::string sq = printed_pipeline({"--algorithm", "smoothquant", "--calibration", kText});
  EXPECT_NE(sq.find("bits: 8"), std::string::npos) << sq;
  EXPECT_NE(sq.find("strategy: token"), std::string::npos) << sq;
  std::string rtn = printed_pipeline({});
  EXPECT_NE(rtn.find("bits: 4"), std::string::npos) << rtn;
  EXPECT_EQ(rtn.find("group_size"), std::string::npos) << rtn;
  // The user's options win over the plugin's.
  std::string awq_sym = printed_pipeline({"--algorithm", "awq", "--calibration", kText, "--sym", "--group-size", "64"});
  EXPECT_NE(awq_sym.find("symmetric: true"), std::string::npos) << awq_sym;
  EXPECT_NE(awq_sym.find("group_size: 64"), std::string::npos) << awq_sym;
}

TEST(CliQuantize, CalibrationDefaultsAreThePipelinesNotRepeated) {
  std::string gptq = printed_pipeline({"--algorithm", "gptq", "--calibration", kText});
  EXPECT_EQ(gptq.find("samples:"), std::string::npos) << gptq;
  EXPECT_EQ(gptq.find("seq_len:"), std::string::npos) << gptq;
}

}  // namespace

namespace {

const std::string kVocab = std::string(XQUANT_SHARED_DIR) + "/models/stories260K/stories260K.gguf";

std::vector<std::string> gptq_on(const fs::path& text, const fs::path& out) {
  return {XQUANT_CLI, "quantize", "--model", kModel, "--tokenizer", kVocab, "--out", out.string(),
          "--algorithm", "gptq", "--group-size", "32", "--calibration", text.string(), "--samples", "8", "--seq-len", "128"};
}

TEST(CliCalibration, ATwoByteTextIsRefusedBeforeAnythingIsWritten) {
  TempDir dir("xquant-cli-cal");
  xquant::test::write_file(dir / "two.txt", "hi");
  auto r = run_process(gptq_on(dir / "two.txt", dir / "out"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("calibration: the text gives 3 tokens, fewer than the 16"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(CliCalibration, ARepeatedPassageIsWarnedAbout) {
  TempDir dir("xquant-cli-cal");
  std::string text;
  for (int i = 0; i < 400; ++i) text += "The cat sat on the mat. ";
  xquant::test::write_file(dir / "repeated.txt", text);
  auto r = run_process(gptq_on(dir / "repeated.txt", dir / "out"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("calibration: 8 of 8 windows are repeats"), std::string::npos) << r.err;
}

}  // namespace

}  // namespace test_cli_quantize
