// test_group_size_warning.cpp: a group size the Linears' columns do not
// divide makes them fall back to per-channel; the user gets one warning
// line for all of them (with the count and a few names), not one per Linear.
#include "cli_process.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using xquant::test::read_file;
using xquant::test::run_cli;
using xquant::test::TempDir;

TEST(GroupSizeWarning, OneLineForEveryPerChannelFallback) {
  TempDir dir("xquant-group-warning");
  const fs::path model = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";
  // stories260K: every Linear has 64 or 172 input columns, none a multiple of 128.
  ASSERT_EQ(run_cli({"-q", "quantize", "--model", model.string(), "--out", (dir / "out").string(), "--bits", "4",
                     "--group-size", "128"},
                    dir / "log"),
            0)
      << read_file(dir / "log");
  std::istringstream log(read_file(dir / "log"));
  int lines = 0;
  std::string line, warning;
  while (std::getline(log, line))
    if (line.find("per-channel") != std::string::npos) {
      ++lines;
      warning = line;
    }
  EXPECT_EQ(lines, 1) << read_file(dir / "log");
  EXPECT_NE(warning.find("35 Linear modules quantized per-channel"), std::string::npos) << warning;
  EXPECT_NE(warning.find("model.layers.0.mlp.down_proj (172 columns, group_size 128)"), std::string::npos) << warning;
  EXPECT_NE(warning.find("32 more"), std::string::npos) << warning;
}
