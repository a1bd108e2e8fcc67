// test_moe_progress.cpp: the steps of a MoE layer's quantization that run
// for a long time on a real model report their progress like the statistics
// passes do: AWQ's clip search and quantization of the gate/up group (two
// Linears an expert) and the experts' down_proj groups, one after another.
// Through the real CLI with -v (progress lines even for short steps) on a
// tiny random qwen3_moe checkpoint.
#include "cli_process.hpp"
#include "moe_checkpoint.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace fs = std::filesystem;
using xquant::test::read_file;
using xquant::test::run_cli;
using xquant::test::TempDir;

TEST(MoeProgress, ClipSearchAndExpertDownGroupsReportTheirSteps) {
  TempDir dir("xquant-moe-progress");
  xquant::test::Cfg c{"qwen3_moe"};
  c.hidden = 64;
  c.moe_inter = 16;
  c.layers = 1;
  c.vocab = 512;  // stories260K's vocabulary tokenizes the calibration text
  const fs::path model = xquant::test::write_checkpoint(c, xquant::test::make_weights(c, 5), "moe-progress");
  const fs::path shared = XQUANT_SHARED_DIR;
  ASSERT_EQ(run_cli({"-v", "quantize", "--model", model.string(), "--algorithm", "awq", "--calibration",
                     (shared / "data/tinystories/tinystories_val.subset.txt").string(), "--tokenizer",
                     (shared / "models/stories260K/stories260K.gguf").string(), "--samples", "4", "--seq-len", "32",
                     "--bits", "4", "--group-size", "16", "--out", (dir / "out").string()},
                    dir / "log"),
            0)
      << read_file(dir / "log");
  const std::string log = read_file(dir / "log");
  // gate/up of 8 experts, each clipped and quantized: 32 steps (the router stays dense).
  EXPECT_NE(log.find("awq clip search and quantization: 32/32"), std::string::npos) << log;
  EXPECT_NE(log.find("layer 0 experts' down_proj quantized: 8/8 experts"), std::string::npos) << log;
}
