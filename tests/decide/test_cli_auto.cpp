// test_cli_auto.cpp: `xquant quantize --algorithm auto` as a user runs it:
// --explain prints the decision and writes nothing; the decision engine's
// options are refused without --algorithm auto.
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>

namespace {

const std::string kShared = XQUANT_SHARED_DIR;

struct Result {
  int status = -1;
  std::string out;
};

Result run(const std::string& args) {
  Result r;
  FILE* p = ::popen((std::string(XQUANT_CLI) + " --quiet quantize " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) r.out += buf;
  const int s = p ? ::pclose(p) : -1;
  r.status = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  return r;
}

}  // namespace

TEST(CliAuto, ExplainPrintsTheDecisionAndWritesNothing) {
  xquant::test::TempDir dir;
  const Result r = run("--model " + kShared + "/models/stories260K-hf --out " + (dir / "out").string() +
                       " --algorithm auto --group-size 32 --calibration " + kShared +
                       "/data/tinystories/tinystories_val.subset.txt --tokenizer " + kShared +
                       "/models/stories260K/stories260K.gguf --samples 4 --seq-len 64 --accuracy-text " + kShared +
                       "/data/wikitext-2-raw/wiki.test.raw --max-increase 1 --max-tokens 256 --fallback bf16 --explain");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("decision for"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.4.mlp_down"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Spearman rho"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
}

TEST(CliAuto, DecisionOptionsNeedAuto) {
  const Result r = run("--model " + kShared + "/models/stories260K-hf --out /tmp/unused --max-increase 1%");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("--max-increase is an option of --algorithm auto"), std::string::npos) << r.out;
}
