// test_fuzz_regressions.cpp: replays, through the same functions libFuzzer
// drives (fuzz_targets.hpp), every committed input of every target:
//   * tests/fuzz/regressions/<target>/: inputs that once crashed a parser,
//     escaped it with the wrong exception or hung it; each must now be
//     refused with an xquant::Error carrying a message, except those under
//     regressions/<target>/accepted/, valid inputs that once hung or crashed
//     a parser, which must now be accepted (a hang fails by ctest's timeout);
//   * tests/fuzz/corpus/<target>/: the seed corpus; each must be accepted
//     or refused with an xquant::Error, never anything else.
// Runs in the ordinary (gcc) build, so CI replays them without clang.
#include "fuzz_targets.hpp"

#include "core/error.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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

// Runs `target` on `file`: "accepted", "error: <message>", or a failure
// for any other exception.
std::string outcome(const xquant::fuzz::Target& target, const fs::path& file) {
  const auto data = bytes_of(file);
  try {
    target.run(data.data(), data.size());
    return "accepted";
  } catch (const xquant::Error& e) {
    return std::string("error: ") + e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << target.name << ": " << file << " escaped with a " << typeid(e).name() << ": " << e.what();
  } catch (...) {
    ADD_FAILURE() << target.name << ": " << file << " escaped with a non-standard exception";
  }
  return "escaped";
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
}

TEST_P(FuzzInputs, ValidRegressionsAreAccepted) {
  for (const auto& file : inputs_in(kFuzzDir / "regressions" / GetParam().name / "accepted"))
    EXPECT_EQ(outcome(GetParam(), file), "accepted") << file;
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
