// test_load_phases.cpp: with XQUANT_LOAD_PHASES=1 a model load logs each
// phase (engine/load_phases.cpp) at info level, in order, every line with
// its seconds, the seconds since the process started, which only grow, and
// the resident memory then (never above the peak it gives beside it).
#include "core/log.hpp"
#include "core/runtime.hpp"
#include "engine/load_phases.hpp"
#include "engine/model.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using namespace xquant;
namespace fs = std::filesystem;

TEST(LoadPhases, AModelLoadLogsItsPhasesInOrder) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  logger().sinks().push_back(sink);
  ::setenv("XQUANT_LOAD_PHASES", "1", 1);
  const double before = seconds_since_process_start();
  {
    Runtime rt{RuntimeOptions{}};
    auto model = Model::open(rt, fs::path(XQUANT_SHARED_DIR) / "models/stories260K-hf");
  }
  const double after = seconds_since_process_start();
  ::unsetenv("XQUANT_LOAD_PHASES");
  logger().sinks().pop_back();

  EXPECT_GT(before, 0.0);
  EXPECT_LT(before, 24 * 3600.0) << "the process start time was misread";
  EXPECT_GE(after, before);
  const std::regex line(
      R"(load phase '([^']+)': ([0-9.]+) s \(at ([0-9.]+) s\), resident ([0-9.]+) MB \(peak ([0-9.]+) MB\))");
  std::vector<std::string> names;
  double at = 0, sum = 0, first_at = -1;
  const std::string text = captured.str();
  for (std::sregex_iterator it(text.begin(), text.end(), line), end; it != end; ++it) {
    names.push_back((*it)[1]);
    const double dt = std::stod((*it)[2]), t = std::stod((*it)[3]);
    EXPECT_GE(dt, 0.0);
    EXPECT_GE(t, at) << (*it)[1];
    // Resident memory: positive, never above the peak so far.
    const double rss = std::stod((*it)[4]), peak = std::stod((*it)[5]);
    EXPECT_GT(rss, 0.0) << (*it)[1];
    EXPECT_LE(rss, peak + 0.1) << (*it)[1];
    if (first_at < 0) first_at = t - dt;
    at = t;
    sum += dt;
  }
  const std::vector<std::string> expect{"checkpoint open", "kernel provider", "embedding", "layers (Linears and norms)",
                                        "lm_head", "upload of float weights", "load end"};
  EXPECT_EQ(names, expect) << text;
  // Each line's seconds are the gap since the previous line (printed to the ms).
  EXPECT_NEAR(sum, at - first_at, 0.001 * static_cast<double>(names.size()));
  EXPECT_LE(at, after + 0.001);
}
