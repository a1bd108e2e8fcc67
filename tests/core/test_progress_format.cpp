// test_progress_format.cpp: the wording of progress reports (bar, rate, ETA),
// pure functions of the counts and the elapsed time.
#include "core/progress_format.hpp"

#include <gtest/gtest.h>

#include <limits>

using namespace xquant;

namespace {

ProgressState state(uint64_t done, uint64_t total, double elapsed, const char* unit = "layers",
                    uint64_t done_at_start = 0) {
  ProgressState s;
  s.task = "calibration";
  s.unit = unit;
  s.done = done;
  s.total = total;
  s.elapsed = elapsed;
  s.done_at_start = done_at_start;
  return s;
}

}  // namespace

TEST(ProgressFormat, Durations) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(7.4), "7s");
  EXPECT_EQ(format_duration(59.6), "1m00s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(7440), "2h04m");
  EXPECT_EQ(format_duration(-1), "--");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "--");
}

TEST(ProgressFormat, RatesKeepThreeSignificantDigits) {
  EXPECT_EQ(format_rate(1.2, "layers"), "1.20 layers/s");
  EXPECT_EQ(format_rate(0.25, "tensors"), "0.250 tensors/s");
  EXPECT_EQ(format_rate(12.34, "layers"), "12.3 layers/s");
  EXPECT_EQ(format_rate(456.7, ""), "457/s");
  EXPECT_EQ(format_rate(1234, "tokens"), "1.23k tokens/s");
  EXPECT_EQ(format_rate(2.5e6, "tokens"), "2.50M tokens/s");
  EXPECT_EQ(format_rate(-1, "tokens"), "-- tokens/s");
}

TEST(ProgressFormat, RateAndEtaCountFromTheFirstReport) {
  // First seen at 1/5 (layer 0 was already done), 2 more in 4 s: 0.5/s, 2 left.
  ProgressState s = state(3, 5, 4.0, "layers", 1);
  EXPECT_DOUBLE_EQ(progress_rate(s), 0.5);
  EXPECT_DOUBLE_EQ(progress_eta(s), 4.0);
  EXPECT_LT(progress_rate(state(1, 5, 0.0, "layers", 1)), 0);  // nothing measured yet
  EXPECT_LT(progress_eta(state(1, 5, 0.0, "layers", 1)), 0);
  EXPECT_EQ(progress_eta(state(5, 5, 3.0)), 0);
  EXPECT_LT(progress_eta(state(5, 0, 3.0)), 0);  // unknown total
}

TEST(ProgressFormat, Bar) {
  EXPECT_EQ(progress_bar(0, 5, 10), "[..........]");
  EXPECT_EQ(progress_bar(3, 5, 10), "[######....]");
  EXPECT_EQ(progress_bar(5, 5, 10), "[##########]");
  EXPECT_EQ(progress_bar(9, 5, 10), "[##########]");  // overshoot is clamped
  EXPECT_EQ(progress_bar(3, 0, 4), "[....]");         // unknown total
}

TEST(ProgressFormat, TerminalLine) {
  EXPECT_EQ(render_progress_bar_line(state(3, 5, 4.0, "layers", 1), 10),
            "calibration [######....]  3/5 layers   60%  0.500 layers/s  ETA 4s");
  EXPECT_EQ(render_progress_bar_line(state(1, 5, 0.0, "layers", 1), 10),
            "calibration [##........]  1/5 layers   20%  ETA --");
  EXPECT_EQ(render_progress_bar_line(state(5, 5, 65.0, "layers", 0), 10),
            "calibration [##########]  5/5 layers  100%  0.0769 layers/s  in 1m05s");
  EXPECT_EQ(render_progress_bar_line(state(40, 0, 2.0, "tokens"), 10), "calibration  40 tokens  20.0 tokens/s");
}

TEST(ProgressFormat, PlainLine) {
  EXPECT_EQ(render_progress_plain_line(state(3, 5, 4.0, "layers", 1)),
            "calibration: 3/5 layers (60%), 0.500 layers/s, ETA 4s");
  EXPECT_EQ(render_progress_plain_line(state(1, 5, 0.0, "layers", 1)), "calibration: 1/5 layers (20%), ETA --");
  EXPECT_EQ(render_progress_plain_line(state(12, 12, 2.0, "", 0)), "calibration: 12/12 (100%), 6.00/s, in 2s");
}

TEST(ProgressFormat, PlainLinesAtNewDecilesOfStepsLongerThanTheQuietTime) {
  EXPECT_EQ(plain_line_decile(state(3, 20, 0.4), -1, 1.0), -1) << "a step under a second so far: no line";
  EXPECT_EQ(plain_line_decile(state(20, 20, 0.9), -1, 1.0), -1) << "a step done in under a second leaves no line";
  EXPECT_EQ(plain_line_decile(state(7, 20, 1.5), -1, 1.0), 3) << "a long step's first line: the decile it reached";
  EXPECT_EQ(plain_line_decile(state(7, 20, 1.6), 3, 1.0), -1) << "each decile once";
  EXPECT_EQ(plain_line_decile(state(8, 20, 2.0), 3, 1.0), 4);
  EXPECT_EQ(plain_line_decile(state(20, 20, 5.0), 9, 1.0), 10) << "the finished line";
  EXPECT_EQ(plain_line_decile(state(40, 0, 5.0, "tokens"), -1, 1.0), -1) << "no total, no deciles";
  EXPECT_EQ(plain_line_decile(state(0, 5, 0.0), -1, 0.0), 0) << "quiet_for 0: every decile from the first report";
}
