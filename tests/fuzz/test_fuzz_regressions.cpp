// test_fuzz_regressions.cpp: replays, through the same functions libFuzzer
// drives (fuzz_targets.hpp), every committed input of every target:
//   * tests/fuzz/regressions/<target>/: inputs that once crashed a parser,
//     escaped it with the wrong exception or hung it; each must now be
//     refused with an xquant::Error carrying a message, except those under
//     regressions/<target>/accepted/, valid inputs that once hung or crashed
//     a parser, which must now be accepted (a hang fails by ctest's timeout);
//   * built_regressions() below: such inputs for the binary containers
//     (GGUF, safetensors), made here from a description of what the fuzzer
//     found rather than committed as model-like files;
//   * tests/fuzz/corpus/<target>/: the seed corpus; each must be accepted
//     or refused with an xquant::Error, never anything else.
// Runs in the ordinary (gcc) build, so CI replays them without clang.
#include "fuzz_targets.hpp"

#include "core/error.hpp"
#include "gguf_builder.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path kFuzzDir = fs::path(XQUANT_SOURCE_DIR) / "tests" / "fuzz";

std::vector<fs::path> inputs_in(const fs::path& dir) {
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<uint8_t> bytes_of(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Runs `target` on `data` (named `what` in failures): "accepted",
// "error: <message>", or a failure for any other exception.
std::string outcome(const xquant::fuzz::Target& target, const std::vector<uint8_t>& data, const std::string& what) {
  try {
    target.run(data.data(), data.size());
    return "accepted";
  } catch (const xquant::Error& e) {
    return std::string("error: ") + e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << target.name << ": " << what << " escaped with a " << typeid(e).name() << ": " << e.what();
  } catch (...) {
    ADD_FAILURE() << target.name << ": " << what << " escaped with a non-standard exception";
  }
  return "escaped";
}

std::string outcome(const xquant::fuzz::Target& target, const fs::path& file) {
  return outcome(target, bytes_of(file), file.string());
}

// ---- regressions built here -------------------------------------------------
struct BuiltInput {
  const char* target;  // a kTargets name
  const char* name;    // what the fuzzer found, as the commit that fixed it says
  bool accepted;       // a valid input that once crashed (else: must be refused)
  std::vector<uint8_t> (*make)();
};

// The llama header of the gguf target's seed "llama_small"
// (tests/fuzz/make_seeds.py), with head_count as given.
void llama_header(gguf_test::Builder& b, void (*head_count)(gguf_test::Builder&)) {
  b.str("general.architecture", "llama");
  head_count(b);
  b.u32("llama.attention.head_count_kv", 1);
  b.u32("llama.embedding_length", 8);
  b.u32("llama.block_count", 1);
  b.f32("llama.rope.freq_base", 10000.f);
  b.str("tokenizer.ggml.model", "llama");
  b.strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a"});
  b.array<float>("tokenizer.ggml.scores", 6, {0.f, 0.f, 0.f, -1.f});
  b.u32("tokenizer.ggml.bos_token_id", 1);
}

// cda8657: a NaN where the loader reads an integer was converted (UB);
// now refused, naming the key.
std::vector<uint8_t> gguf_head_count_is_nan() {
  gguf_test::Builder b;
  llama_header(b, [](gguf_test::Builder& g) {
    g.f32("llama.attention.head_count", std::numeric_limits<float>::quiet_NaN());
  });
  b.add("output_norm.weight", {8}, 0, std::vector<uint8_t>(32));
  return b.build();
}

// fcc92a1: raw() of an attn_q tensor with no bytes (8 rows of 0 columns),
// which the llama loader permutes, passed memcpy a null pointer (UB, seen
// by UBSan); an empty tensor is valid and accepted.
std::vector<uint8_t> gguf_empty_permuted_tensor() {
  gguf_test::Builder b;
  llama_header(b, [](gguf_test::Builder& g) { g.u32("llama.attention.head_count", 2); });
  b.add("blk.0.attn_q.weight", {0, 8}, 0, {});
  b.add("output_norm.weight", {8}, 0, std::vector<uint8_t>(32));
  return b.build();
}

// 0dd34e7: a [2^47, 2^47, 2^28] F64 tensor's element bits wrapped a 128-bit
// product and it was accepted as 0 bytes; now refused.
std::vector<uint8_t> safetensors_element_bits_wrap_128_bits() {
  std::string header =
      R"({"w": {"dtype": "F64", "shape": [140737488355328, 140737488355328, 268435456], "data_offsets": [0, 0]}})";
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::vector<uint8_t> out = gguf_test::Builder::bytes(static_cast<uint64_t>(header.size()));
  out.insert(out.end(), header.begin(), header.end());
  return out;
}

const std::vector<BuiltInput>& built_regressions() {
  static const std::vector<BuiltInput> inputs = {
      {"gguf", "head_count_is_nan", false, gguf_head_count_is_nan},
      {"gguf", "empty_permuted_tensor", true, gguf_empty_permuted_tensor},
      {"safetensors_header", "element_bits_wrap_128_bits", false, safetensors_element_bits_wrap_128_bits},
  };
  return inputs;
}

}  // namespace

namespace xquant::fuzz {
// gtest names the parameter in failure messages with this.
void PrintTo(const Target& t, std::ostream* os) { *os << t.name; }
}  // namespace xquant::fuzz

namespace {

class FuzzInputs : public ::testing::TestWithParam<xquant::fuzz::Target> {};

TEST_P(FuzzInputs, RegressionsAreRefusedWithAClearError) {
  for (const auto& file : inputs_in(kFuzzDir / "regressions" / GetParam().name)) {
    const std::string got = outcome(GetParam(), file);
    EXPECT_TRUE(got.rfind("error: ", 0) == 0 && got.size() > 7) << file << ": " << got;
  }
  for (const BuiltInput& in : built_regressions()) {
    if (in.accepted || std::strcmp(in.target, GetParam().name) != 0) continue;
    const std::string got = outcome(GetParam(), in.make(), in.name);
    EXPECT_TRUE(got.rfind("error: ", 0) == 0 && got.size() > 7) << in.name << ": " << got;
  }
}

TEST_P(FuzzInputs, ValidRegressionsAreAccepted) {
  for (const auto& file : inputs_in(kFuzzDir / "regressions" / GetParam().name / "accepted"))
    EXPECT_EQ(outcome(GetParam(), file), "accepted") << file;
  for (const BuiltInput& in : built_regressions()) {
    if (!in.accepted || std::strcmp(in.target, GetParam().name) != 0) continue;
    EXPECT_EQ(outcome(GetParam(), in.make(), in.name), "accepted") << in.name;
  }
}

TEST_P(FuzzInputs, SeedCorpusIsAcceptedOrRefusedCleanly) {
  const auto files = inputs_in(kFuzzDir / "corpus" / GetParam().name);
  EXPECT_FALSE(files.empty()) << "no seed corpus for " << GetParam().name;
  int accepted = 0;
  std::string outcomes;
  for (const auto& file : files) {
    const std::string got = outcome(GetParam(), file);
    accepted += got == "accepted";
    outcomes += "\n  " + file.filename().string() + ": " + got;
  }
  // Seeds are mostly valid inputs: a parser that refuses them all is broken.
  EXPECT_GT(accepted, 0) << GetParam().name << " accepted none of its seeds:" << outcomes;
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzInputs, ::testing::ValuesIn(xquant::fuzz::kTargets),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
