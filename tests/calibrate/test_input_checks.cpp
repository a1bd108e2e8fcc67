// test_input_checks.cpp: the calibration input rules of docs/pipeline.md
// ("Calibration checks"): a floor below which a text is refused, and
// warnings for too few rows for the Hessian's rank, heavy reuse of a short
// text, repeated windows and padding.
#include "calibrate/calibrator.hpp"
#include "calibrate/input_checks.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

using namespace xquant;

namespace {

using Windows = std::vector<std::vector<int32_t>>;

std::vector<int32_t> counting(size_t n, int32_t first = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Which rules fire, as the start of each message after "calibration: ".
bool fires(const std::vector<std::string>& warnings, const std::string& part) {
  for (const auto& w : warnings)
    if (w.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(CalibrationInput, FloorRefusesTinyTexts) {
  auto tiny = summarize_calibration_input(counting(3), {counting(3)});
  try {
    require_calibration_floor(tiny);
    FAIL() << "a 3-token text was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the text gives 3 tokens, fewer than the 16"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(require_calibration_floor(summarize_calibration_input(counting(16), {counting(16)})));
}

TEST(CalibrationInput, FewerRowsThanInputColumnsWarnsAboutTheHessiansRank) {
  auto s = summarize_calibration_input(counting(100), {counting(40), counting(40, 40)});
  EXPECT_EQ(s.distinct_rows, 80u);
  EXPECT_TRUE(fires(calibration_input_warnings(s, 172), "80 distinct token rows are fewer than the 172 input columns"));
  EXPECT_FALSE(fires(calibration_input_warnings(s, 64), "input columns"));
  EXPECT_FALSE(fires(calibration_input_warnings(s, 0), "input columns"));  // width unknown
}

TEST(CalibrationInput, CopiedWindowsAddNoRows) {
  auto s = summarize_calibration_input(counting(200), {counting(50), counting(50), counting(50), counting(50, 100)});
  EXPECT_EQ(s.distinct_rows, 100u);
  EXPECT_EQ(s.repetitive_windows, 2u);
}

TEST(CalibrationInput, HeavyReuseOfAShortTextWarns) {
  // 8 windows of 64 from a text of 100 tokens: each token drawn ~5 times.
  Windows w;
  for (int i = 0; i < 8; ++i) w.push_back(counting(64, i * 4));
  auto s = summarize_calibration_input(counting(100), w);
  EXPECT_TRUE(fires(calibration_input_warnings(s, 0), "8 windows draw 512 tokens from a text of 100"));
  auto plenty = summarize_calibration_input(counting(1000), w);
  EXPECT_FALSE(fires(calibration_input_warnings(plenty, 0), "windows draw"));
}

TEST(CalibrationInput, RepeatedOrLowDiversityWindowsWarn) {
  // A passage repeated: windows of period 3 (few distinct ids in 64 tokens).
  std::vector<int32_t> periodic;
  for (int i = 0; i < 64; ++i) periodic.push_back(i % 3);
  Windows w = {periodic, periodic, counting(64)};
  auto s = summarize_calibration_input(counting(10000), w);
  EXPECT_EQ(s.repetitive_windows, 2u);
  EXPECT_TRUE(fires(calibration_input_warnings(s, 0), "2 of 3 windows are repeats"));
  Windows varied = {counting(64), counting(64, 64), counting(64, 128)};
  EXPECT_TRUE(calibration_input_warnings(summarize_calibration_input(counting(10000), varied), 0).empty());
}

TEST(CalibrationInput, OneTokenFillingHalfTheSamplesLooksLikePadding) {
  std::vector<int32_t> padded = counting(20);
  padded.resize(64, 0);  // 20 ids then id 0 as padding: 45 of 64
  auto s = summarize_calibration_input(counting(10000), {padded});
  EXPECT_EQ(s.top_token, 0);
  EXPECT_EQ(s.top_token_count, 45u);
  EXPECT_TRUE(fires(calibration_input_warnings(s, 0), "token id 0 fills 70% of the sampled tokens"));
}

TEST(CalibrationInput, SamplesFromATwoByteTextAreRefused) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  Runtime rt(o);
  auto model = Model::open(rt, std::filesystem::path(XQUANT_SHARED_DIR) / "models/stories260K/stories260K.gguf");
  EXPECT_THROW(LayerwiseCalibrator::samples_from_text(*model, "hi", 128, 512, 0), Error);
  // 24 tokens: above the floor.
  EXPECT_EQ(LayerwiseCalibrator::samples_from_text(*model, "Once upon a time there was a cat. The cat sat on a mat.", 1,
                                                   512, 0).size(),
            1u);
}
