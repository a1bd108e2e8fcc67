// test_cli_interrupt.cpp: what a stopped run leaves in its output folder.
// Ctrl-C (SIGINT) and SIGTERM unwind through the runner, whose writer guard
// removes every temporary; the run exits 128 + signal with one line. A run
// killed hard (SIGKILL) cannot clean up: the next writer into the folder
// removes the temporaries whose process is gone, never a live one's.
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cli_interrupt {

namespace {

using xquant::test::read_file;
using xquant::test::Subprocess;
using xquant::test::TempDir;
using xquant::test::write_file;

const std::string kShared = XQUANT_SHARED_DIR;
const std::string kModel = kShared + "/models/stories260K-hf";
const std::string kVocab = kShared + "/models/stories260K/stories260K.gguf";  // the HF copy has no tokenizer
const std::string kText = kShared + "/data/tinystories/tinystories_val.subset.txt";

// The hidden files (temporaries) in `dir`; none when the folder is gone.
std::vector<std::string> dot_files(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string()[0] == '.') out.push_back(e.path().filename().string());
  return out;
}

// A pid that certainly belonged to a process that has exited (a reaped child).
long dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return static_cast<long>(pid);
}

// A calibrated GPTQ run of a few seconds: five layers, each long enough that
// a signal sent after the first one lands well before the last. -v: its
// progress lines even for steps under a second (the test waits for one).
std::vector<std::string> gptq_run(const fs::path& out) {
  return {XQUANT_CLI, "-v", "quantize", "--model", kModel, "--tokenizer", kVocab, "--out", out.string(),
          "--algorithm", "gptq", "--group-size", "32", "--calibration", kText, "--samples", "128", "--seq-len", "256"};
}

void interrupt_after_first_layer(int signo, int expected_exit) {
  TempDir dir("xquant-cli-sigint");
  const fs::path out = dir / "out";
  Subprocess run(gptq_run(out));
  // Non-terminal stderr with -v: progress is a log line per 10%, the first after layer 0.
  ASSERT_TRUE(run.read_until([](const std::string& err) { return err.find("calibration: 1/5") != std::string::npos; }))
      << "the run ended before its first layer finished:\n" << run.err();
  EXPECT_FALSE(dot_files(out).empty()) << "no temporary was open when the signal was sent";
  ::kill(run.pid(), signo);
  auto r = run.wait();
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.exit_code, expected_exit) << r.err;
  EXPECT_NE(r.err.find("xquant: interrupted\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("calibration: 5/5"), std::string::npos) << "the run finished before the signal";
  // The writer removes its temporaries, and the folder too when it created it.
  EXPECT_TRUE(dot_files(out).empty()) << "temporaries left: " << dot_files(out).front();
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
}

TEST(CliInterrupt, CtrlCRemovesTheRunsTemporariesAndExits130) { interrupt_after_first_layer(SIGINT, 130); }

TEST(CliInterrupt, SigtermRemovesTheRunsTemporariesAndExits143) { interrupt_after_first_layer(SIGTERM, 143); }

TEST(CliInterrupt, NextRunRemovesStaleTemporariesOfDeadProcessesOnly) {
  TempDir dir("xquant-cli-stale");
  const fs::path out = dir / "out";
  fs::create_directories(out);
  const std::string dead = std::to_string(dead_pid()), live = std::to_string(::getpid());
  const std::vector<std::string> stale = {".model.safetensors." + dead + ".0.data",
                                          ".model.safetensors." + dead + ".1.tmp",
                                          ".model-00001-of-00002.safetensors." + dead + ".3.data"};
  const std::vector<std::string> kept = {".model.safetensors." + live + ".0.data",  // a live writer's
                                         ".notes." + dead + ".0.data",               // not a safetensors temporary
                                         ".model.safetensors.x" + dead + ".0.data"};  // not our pattern
  for (const auto& n : stale) write_file(out / n, "partial");
  for (const auto& n : kept) write_file(out / n, "keep");

  auto r = xquant::test::run_process({XQUANT_CLI, "-q", "quantize", "--model", kModel, "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  for (const auto& n : stale) EXPECT_FALSE(fs::exists(out / n)) << n;
  for (const auto& n : kept) EXPECT_EQ(read_file(out / n), "keep") << n;
}

}  // namespace

}  // namespace test_cli_interrupt
