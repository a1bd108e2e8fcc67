// test_cli_errors.cpp: every subcommand's answer to bad input, as a user sees
// it: the built xquant binary run as a subprocess. Usage errors (unknown
// command or option, missing or malformed values) exit 2, other failures
// (missing files, unreadable models) exit 1; every message names what was
// wrong; nothing crashes.
#include "subprocess.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using xquant::test::run_process;

const std::string kModel = std::string(XQUANT_SHARED_DIR) + "/models/stories260K-hf";
const std::string kGguf = std::string(XQUANT_SHARED_DIR) + "/models/stories260K/stories260K.gguf";
const std::string kText = std::string(XQUANT_SHARED_DIR) + "/data/tinystories/tinystories_val.subset.txt";
const std::string kMissing = "/nonexistent/xquant-test-missing";

struct BadInput {
  std::vector<std::string> args;  // after the binary
  int exit_code;
  std::string message;  // a substring of stderr
};

std::ostream& operator<<(std::ostream& os, const BadInput& b) {
  for (const auto& a : b.args) os << a << ' ';
  return os;
}

class CliErrors : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliErrors, ExitCodeAndMessage) {
  const BadInput& c = GetParam();
  std::vector<std::string> argv{XQUANT_CLI};
  argv.insert(argv.end(), c.args.begin(), c.args.end());
  auto r = run_process(argv);
  EXPECT_EQ(r.signal, 0) << "crashed: " << r.err;
  EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
  EXPECT_NE(r.err.find(c.message), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
}

const BadInput kCases[] = {
    // The command line itself.
    {{"quantise"}, 2, "unknown command 'quantise'; did you mean 'quantize'?"},
    {{"--threads"}, 2, "option '--threads' needs a value"},
    {{"--threads", "many", "plugins"}, 2, "--threads expects a non-negative integer, got 'many'"},
    {{"--plugin-path", kMissing, "plugins"}, 2, "--plugin-path '" + kMissing + "': no such folder"},
    // run
    {{"run", "--bogus", "p.yaml"}, 2, "unknown option '--bogus'"},
    {{"run"}, 2, "missing argument PIPELINE.yaml"},
    {{"run", "a.yaml", "b.yaml"}, 2, "unexpected argument 'b.yaml'"},
    {{"run", kMissing}, 1, "cannot read pipeline '" + kMissing + "'"},
    {{"run", "/etc/hostname"}, 1, "a pipeline is a mapping"},
    // quantize
    {{"quantize", "--model", kModel, "--out", "o", "--bogus"}, 2, "unknown option '--bogus'"},
    {{"quantize", "--out", "o"}, 2, "missing required option '--model'"},
    {{"quantize", "--model"}, 2, "option '--model' needs a value"},
    // A value option given twice is refused (the last one used to win silently)...
    {{"quantize", "--model", kModel, "--model", kMissing, "--out", "o"}, 2,
     "option '--model' given twice ('" + kModel + "', then '" + kMissing + "'); give it once"},
    // ...except --param, whose repeats add up: the first, bad one is seen.
    {{"convert", "--model", kModel, "--out", "/tmp/xquant-cli-errors-never.gguf", "--format", "gguf", "--param",
      "bogus=1", "--param", "type=Q4_0"},
     2, "'gguf' has no parameter 'bogus'"},
    {{"quantize", "--model", kMissing, "--out", "o"}, 2, "model.path: '" + kMissing + "' does not exist"},
    {{"quantize", "--model", kModel, "--out", "o", "--bits", "x"}, 2, "option '--bits' expects an integer, got 'x'"},
    {{"quantize", "--model", kModel, "--out", "o", "--bits", "12"}, 2, "weights.bits: must be between 2 and 8, got 12"},
    {{"quantize", "--model", kModel, "--out", "o", "--w8a8", "fast"}, 2, "--w8a8 takes 'dynamic' or 'static', got 'fast'"},
    {{"quantize", "--model", kModel, "--out", "o", "--asym", "--sym"}, 2, "--asym and --sym contradict each other"},
    {{"quantize", "--model", kModel, "--out", "o", "--strategy", "diagonal"}, 2, "'diagonal' is not one of: tensor, channel, group"},
    {{"quantize", "--model", kModel, "--out", "o", "--format", "nope"}, 2, "no format plugin named 'nope'"},
    {{"quantize", "--model", kModel, "--out", "o", "--param", "damp"}, 2, "--param expects KEY=VALUE"},
    {{"quantize", "--model", kModel, "--out", "o", "--algorithm", "gptq", "--calibration", kMissing}, 2,
     "calibration.text: '" + kMissing + "' is not a file"},
    {{"quantize", "--model", kModel, "--out", "o", "--algorithm", "gptq", "--calibration", kText, "--param", "dmp=1"}, 2,
     "'gptq' has no parameter 'dmp'; did you mean 'damp'?"},
    {{"quantize", "--model", kModel, "--out", "o", "--algorithm", "gtpq"}, 2,
     "unknown algorithm 'gtpq'; did you mean 'gptq'?"},
    {{"quantize", "--model", kModel, "--out", "o", "--algorithm", "gptq"}, 2,
     "algorithm 'gptq' needs calibration statistics: give --calibration FILE"},
    {{"quantize", "--model", kModel, "--out", "o", "--w8a8", "static"}, 2, "(--w8a8 static) need --calibration FILE"},
    // inspect
    {{"inspect", "--bogus", kModel}, 2, "unknown option '--bogus'"},
    {{"inspect", "-z", kModel}, 2, "unknown option '-z'"},
    {{"inspect"}, 2, "missing argument PATH"},
    {{"inspect", kMissing}, 1, "model path '" + kMissing + "' does not exist"},
    {{"inspect", "/etc/hostname"}, 1, "no loader recognises '/etc/hostname'"},
    // plugins
    {{"plugins", "--bogus"}, 2, "unknown option '--bogus'"},
    {{"plugins", "extra"}, 2, "unexpected argument 'extra'"},
    // tokenize
    {{"tokenize", "--model", kModel, "--text", "hi", "--bogus"}, 2, "unknown option '--bogus'"},
    {{"tokenize", "--text", "hi"}, 2, "missing required option '--model'"},
    {{"tokenize", "--model", kModel}, 2, "give exactly one of --text or --file"},
    {{"tokenize", "--model", kMissing, "--text", "hi"}, 1, "model path '" + kMissing + "' does not exist"},
    {{"tokenize", "--model", kModel, "--file", kMissing}, 1, "cannot read '" + kMissing + "'"},
    // eval
    {{"eval", "--model", kModel, "--text", kText, "--bogus"}, 2, "unknown option '--bogus'"},
    {{"eval", "--model", kModel}, 2, "missing required option '--text'"},
    {{"eval", "--model", kModel, "--text", kMissing}, 1, "cannot read text file '" + kMissing + "'"},
    {{"eval", "--model", kModel, "--text", kText, "--ctx", "x"}, 2, "option '--ctx' expects an integer, got 'x'"},
    {{"eval", "--model", kModel, "--text", kText, "--ctx", "-5"}, 2, "--ctx must be at least 2"},
    {{"eval", "--model", kModel, "--text", kText, "--provider", "nope"}, 1, "no kernel plugin named 'nope'"},
    {{"eval", "--model", kModel, "--text", kText, "--protocol", "wiki"}, 2,
     "--protocol takes 'xquant' or 'llama-perplexity', got 'wiki'"},
    {{"eval", "--model", kModel, "--text", kText, "--chunks", "2"}, 2, "--chunks is an option of --protocol llama-perplexity"},
    {{"eval", "--model", kModel, "--text", kText, "--protocol", "llama-perplexity", "--max-tokens", "9"}, 2,
     "--max-tokens is an option of --protocol xquant"},
    // generate
    {{"generate", "--model", kModel, "--bogus"}, 2, "unknown option '--bogus'"},
    {{"generate"}, 2, "missing required option '--model'"},
    {{"generate", "--model", kMissing}, 1, "model path '" + kMissing + "' does not exist"},
    {{"generate", "--model", kModel, "-n", "x"}, 2, "option '--n' expects an integer, got 'x'"},
    {{"generate", "--model", kModel, "-n", "-3"}, 2, "-n must be >= 0"},
    {{"generate", "--model", kModel, "--temp", "-1"}, 2, "--temp must be >= 0"},
    // bench
    {{"bench"}, 2, "missing required option '--models'"},
    {{"bench", "--models", "m=" + kModel, "--concurrency", "0"}, 2, "--concurrency: '0' is not a positive integer"},
    {{"bench", "--models", "m=" + kModel, "--lengths", "1024"}, 2, "--lengths: expected IN:OUT, got '1024'"},
    {{"bench", "--models", "m=" + kModel, "--kv-dtype", "f8"}, 2, "--kv-dtype must be bf16 or f32"},
    {{"bench", "--models", "=" + kModel}, 2, "--models: expected LABEL=PATH"},
    {{"bench", "--models", "m=" + kMissing, "--provider", "cpu"}, 1, "model path '" + kMissing + "' does not exist"},
    {{"bench", "--models", "m=" + kModel, "--provider", "cpu", "--lengths", "500:100", "--concurrency", "1"}, 1,
     "the model's context is 512"},
};

INSTANTIATE_TEST_SUITE_P(EverySubcommand, CliErrors, ::testing::ValuesIn(kCases));

// Bytes that are not UTF-8 (a prompt, or text cut inside a character) come
// out of `generate --json` as U+FFFD instead of stopping the command.
TEST(Cli, GenerateJsonReplacesBytesThatAreNotUtf8) {
  auto r = run_process({XQUANT_CLI, "generate", "--model", kGguf, "--prompt", "Once \xE2", "-n", "2", "--json"});
  EXPECT_EQ(r.signal, 0) << "crashed: " << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"prompt\": \"Once \xEF\xBF\xBD\""), std::string::npos) << r.out;
}

TEST(Cli, UsageErrorsPointAtHelp) {
  auto r = run_process({XQUANT_CLI, "quantize", "--bogus"});
  EXPECT_NE(r.err.find("(see 'xquant --help')"), std::string::npos) << r.err;
}

TEST(Cli, HelpExitsZeroAndCitesNoDocumentOutsideTheRepository) {
  for (const char* cmd : {"run", "quantize", "inspect", "plugins", "tokenize", "eval", "generate"}) {
    auto r = run_process({XQUANT_CLI, cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find(std::string("usage: xquant ") + cmd), std::string::npos) << r.out;
    for (const char* stale : {"reference section", "section B", "design.md", "\xC2\xA7"})
      EXPECT_EQ(r.out.find(stale), std::string::npos) << cmd << " --help cites '" << stale << "':\n" << r.out;
  }
}

}  // namespace
