// test_resume.cpp: a calibrated run killed with SIGKILL after a finished
// layer resumes (`xquant run --resume`) from its checkpoint and writes the
// same bytes as an uninterrupted run; a checkpoint of another run is
// refused; a half-written layer file is ignored. And the output does not
// depend on the thread count. All through the real CLI on stories260K; and
// a Mixture-of-Experts run (tiny random qwen3_moe, experts calibrated a
// chunk at a time, some on the all-token fallback) killed and resumed.
#include "cli_process.hpp"
#include "moe_checkpoint.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"
#include "test_files.hpp"
#include "test_runtime.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using xquant::test::read_file;
using xquant::test::run_cli;
using xquant::test::spawn;
using xquant::test::wait_exit;
using xquant::test::TempDir;
using xquant::test::write_file;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_resume {

namespace {

const fs::path kModel = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";
const fs::path kTokenizer = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K" / "stories260K.gguf";
const fs::path kText = fs::path(XQUANT_SHARED_DIR) / "data" / "tinystories" / "tinystories_val.subset.txt";

std::string pipeline_yaml(const std::string& algorithm, int samples, const fs::path& out, int bits = 4) {
  return "model: {path: " + kModel.string() + "}\n" + "calibration: {text: " + kText.string() +
         ", tokenizer: " + kTokenizer.string() + ", samples: " + std::to_string(samples) + ", seq_len: 256}\n" +
         "quantize:\n  - {algorithm: " + algorithm + ", weights: {bits: " + std::to_string(bits) +
         ", group_size: 32}}\n" +
         "ignore: [lm_head]\noutput: {path: " + out.string() + "}\n";
}

// Every file of a checkpoint folder but hidden ones (a killed run's writer
// temporaries), with its bytes.
std::map<std::string, std::string> files_of(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.')
      out[e.path().filename().string()] = read_file(e.path());
  return out;
}

void expect_same_files(const fs::path& a, const fs::path& b) {
  auto fa = files_of(a), fb = files_of(b);
  ASSERT_FALSE(fa.empty());
  ASSERT_EQ(fa.size(), fb.size());
  for (const auto& [name, bytes] : fa) {
    ASSERT_TRUE(fb.count(name)) << name;
    EXPECT_TRUE(bytes == fb[name]) << name << " differs";
  }
}

// Starts the run and SIGKILLs it as soon as layer `layer`'s checkpoint
// exists. False when the run finished before it could be killed.
bool run_and_kill_after_layer(const fs::path& yaml, const fs::path& resume_dir, int layer, const fs::path& log) {
  char name[32];
  std::snprintf(name, sizeof(name), "layer-%05d.bin", layer);
  pid_t pid = spawn({"run", yaml.string()}, log);
  for (;;) {
    if (fs::exists(resume_dir / name)) {
      ::kill(pid, SIGKILL);
      return wait_exit(pid) == 128 + SIGKILL;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace

// 4-bit codes are recorded two to a byte, 8-bit ones as they are
// (write_quantized in resume_checkpoint.cpp): both replay to the same bytes.
class ResumeBits : public testing::TestWithParam<int> {};

TEST_P(ResumeBits, KilledRunResumesToTheSameBytes) {
  const int bits = GetParam();
  TempDir dir("xquant-resume");
  write_file(dir / "ref.yaml", pipeline_yaml("gptq", 48, dir / "ref", bits));
  write_file(dir / "out.yaml", pipeline_yaml("gptq", 48, dir / "out", bits));
  write_file(dir / "other.yaml", pipeline_yaml("gptq", 40, dir / "out", bits));
  ASSERT_EQ(run_cli({"run", (dir / "ref.yaml").string()}, dir / "ref.log"), 0) << read_file(dir / "ref.log");
  EXPECT_FALSE(fs::exists(dir / "ref.resume")) << "the checkpoint outlived a successful run";

  const fs::path ckpt = dir / "out.resume";
  bool killed = false;
  for (int attempt = 0; attempt < 5 && !killed; ++attempt) {
    fs::remove_all(dir / "out");
    killed = run_and_kill_after_layer(dir / "out.yaml", ckpt, 1, dir / "killed.log");
  }
  ASSERT_TRUE(killed) << "every run finished before it could be killed";
  EXPECT_FALSE(fs::exists(dir / "out" / "model.safetensors")) << "a killed run left a checkpoint under its final name";
  ASSERT_TRUE(fs::exists(ckpt / "layer-00001.bin"));

  // Another run (other calibration samples) must not pick this checkpoint up.
  EXPECT_NE(run_cli({"run", "--resume", (dir / "other.yaml").string()}, dir / "other.log"), 0);
  EXPECT_NE(read_file(dir / "other.log").find("was made by a different run"), std::string::npos)
      << read_file(dir / "other.log");
  ASSERT_TRUE(fs::exists(ckpt / "layer-00001.bin")) << "a refused resume touched the checkpoint";

  // A layer file cut short (a kill during a write that was not atomic) and a
  // temporary are ignored: the run continues after the last whole layer.
  int last = -1;
  for (int l = 0; l < 5; ++l) {
    char name[32];
    std::snprintf(name, sizeof(name), "layer-%05d.bin", l);
    if (fs::exists(ckpt / name)) last = l;
  }
  ASSERT_GE(last, 1);
  if (last < 4) {
    char name[32];
    std::snprintf(name, sizeof(name), "layer-%05d.bin", last + 1);
    write_file(ckpt / name, "XQRSLAY1 half a layer");
  }
  write_file(ckpt / "hidden.bin.tmp", "half");

  ASSERT_EQ(run_cli({"run", "--resume", (dir / "out.yaml").string()}, dir / "resumed.log"), 0)
      << read_file(dir / "resumed.log");
  const std::string log = read_file(dir / "resumed.log");
  EXPECT_EQ(log.find("continuing at layer 0"), std::string::npos) << "started over instead of resuming:\n" << log;
  EXPECT_NE(log.find("continuing at layer"), std::string::npos) << log;
  expect_same_files(dir / "ref", dir / "out");
  EXPECT_FALSE(fs::exists(ckpt)) << "the checkpoint outlived a successful run";
}

INSTANTIATE_TEST_SUITE_P(Bits, ResumeBits, testing::Values(4, 8),
                         [](const testing::TestParamInfo<int>& i) { return "W" + std::to_string(i.param); });

// The resumed run replays the finished layers' tensors and report lines,
// the experts' calibration lines included (routed tokens, fallback).
TEST(Resume, KilledMoeRunResumesToTheSameBytesAndExpertLines) {
  TempDir dir("xquant-resume-moe");
  xquant::test::Cfg c{"qwen3_moe"};
  c.hidden = 64;
  c.moe_inter = 16;
  c.layers = 6;
  c.top_k = 2;
  c.vocab = 512;  // stories260K's vocabulary tokenizes the calibration text
  c.norm_topk = true;
  const fs::path model = xquant::test::write_checkpoint(c, xquant::test::make_weights(c, 31), "resume");
  auto yaml = [&](const fs::path& out) {
    return "model: {path: " + model.string() + "}\n" + "calibration: {text: " + kText.string() +
           ", tokenizer: " + kTokenizer.string() +
           ", samples: 4, seq_len: 32, moe: {min_tokens: 32, experts_per_pass: 3}}\n" +
           "quantize:\n  - {targets: [\"re:.*_proj$\"], algorithm: gptq, weights: {bits: 4, group_size: 16}}\n" +
           "ignore: [\"re:.*mlp\\\\.gate$\", lm_head]\noutput: {path: " + out.string() + "}\n";
  };
  auto run = [&](const std::string& name, bool resume) {
    xquant::Pipeline p = xquant::parse_pipeline_text(yaml(dir / name), name, (dir / name).parent_path());
    p.resume = resume;
    return xquant::run_pipeline(xquant::test::quiet_runtime(), p);
  };
  const xquant::RunReport ref = run("ref", false);
  int fallbacks = 0;
  for (const auto& e : ref.experts) fallbacks += e.statistics == "routed tokens" ? 0 : 1;
  ASSERT_EQ(ref.experts.size(), static_cast<size_t>(c.layers * c.experts));
  ASSERT_GT(fallbacks, 0) << "the run must include experts on the all-token fallback";
  ASSERT_LT(fallbacks, static_cast<int>(ref.experts.size())) << "and experts on their routed tokens";

  write_file(dir / "out.yaml", yaml(dir / "out"));
  bool killed = false;
  for (int attempt = 0; attempt < 5 && !killed; ++attempt) {
    fs::remove_all(dir / "out");
    fs::remove_all(dir / "out.resume");
    killed = run_and_kill_after_layer(dir / "out.yaml", dir / "out.resume", 1, dir / "killed.log");
  }
  ASSERT_TRUE(killed) << "every run finished before it could be killed";
  const xquant::RunReport resumed = run("out", true);
  expect_same_files(dir / "ref", dir / "out");
  ASSERT_EQ(resumed.experts.size(), ref.experts.size());
  for (size_t i = 0; i < ref.experts.size(); ++i) {
    EXPECT_EQ(resumed.experts[i].layer, ref.experts[i].layer) << i;
    EXPECT_EQ(resumed.experts[i].expert, ref.experts[i].expert) << i;
    EXPECT_EQ(resumed.experts[i].routed_tokens, ref.experts[i].routed_tokens) << i;
    EXPECT_EQ(resumed.experts[i].statistics, ref.experts[i].statistics) << i;
  }
  ASSERT_EQ(resumed.layers.size(), ref.layers.size());
  for (size_t i = 0; i < ref.layers.size(); ++i) EXPECT_EQ(resumed.layers[i].module, ref.layers[i].module) << i;
  EXPECT_FALSE(fs::exists(dir / "out.resume")) << "the checkpoint outlived a successful run";
}

TEST(Resume, QuantizeCommandTakesResume) {
  TempDir dir("xquant-resume");
  // Nothing to resume: a plain run, said so.
  ASSERT_EQ(run_cli({"quantize", "--model", kModel.string(), "--algorithm", "awq", "--calibration", kText.string(),
                     "--tokenizer", kTokenizer.string(), "--samples", "8", "--seq-len", "128", "--bits", "4", "--group-size", "32",
                     "--out", (dir / "out").string(), "--resume"},
                    dir / "q.log"),
            0)
      << read_file(dir / "q.log");
  EXPECT_NE(read_file(dir / "q.log").find("no checkpoint"), std::string::npos) << read_file(dir / "q.log");
  EXPECT_TRUE(fs::exists(dir / "out" / "model.safetensors"));
}

// GPTQ (Cholesky, triangular solves) and AWQ (its scale search runs the
// layer forward through the cpu provider's SGEMMs and attention) write the
// same bytes at 1 and 2 threads.
TEST(Determinism, ThreadCountDoesNotChangeTheOutput) {
  for (const std::string algorithm : {"gptq", "awq"}) {
    SCOPED_TRACE(algorithm);
    TempDir dir("xquant-threads");
    write_file(dir / "t1.yaml", pipeline_yaml(algorithm, 16, dir / "t1"));
    write_file(dir / "t2.yaml", pipeline_yaml(algorithm, 16, dir / "t2"));
    ASSERT_EQ(run_cli({"-q", "--threads", "1", "run", (dir / "t1.yaml").string()}, dir / "t1.log"), 0)
        << read_file(dir / "t1.log");
    ASSERT_EQ(run_cli({"-q", "--threads", "2", "run", (dir / "t2.yaml").string()}, dir / "t2.log"), 0)
        << read_file(dir / "t2.log");
    expect_same_files(dir / "t1", dir / "t2");
  }
}

}  // namespace test_resume
