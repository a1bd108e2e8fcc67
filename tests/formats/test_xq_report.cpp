// test_xq_report.cpp: the quantization report travels inside an `xq` file
// (the manifest's report_json, filled through the format ABI's
// writer_set_report) and `xquant inspect` shows it.
//
// stories260K quantized by `xquant quantize --format xq --json`: the stored
// report is the report the command printed (same layers, schemes, errors,
// dense list, tensor count); inspect prints its summary and one line per
// Linear, and --json gives it as an object; `convert` from an xq file
// carries it over, while a checkpoint of a format without a report
// (compressed-tensors) converts to an xq file without one.
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_xq_report {

namespace {

const fs::path kModel = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";

nlohmann::json inspect_json(const fs::path& p) {
  auto r = xquant::test::run_xquant({"inspect", p.string(), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
}

TEST(XqReport, TheRunsReportTravelsInsideAndInspectShowsIt) {
  xquant::test::TempDir dir("xq-report");
  const fs::path out = dir / "rtn.xq";
  auto q = xquant::test::run_xquant({"quantize", "--model", kModel.string(), "--out", out.string(), "--format", "xq",
                                     "--algorithm", "rtn", "--bits", "4", "--group-size", "32", "--json"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  const nlohmann::json printed = nlohmann::json::parse(q.out);
  ASSERT_EQ(printed["layers"].size(), 35u);

  const nlohmann::json ij = inspect_json(out);
  ASSERT_TRUE(ij.contains("report")) << ij.dump().substr(0, 400);
  const nlohmann::json& stored = ij["report"];
  ASSERT_TRUE(stored.is_object()) << stored.dump();
  // Everything but the time (the stored one stops before the format's finish).
  for (const char* key : {"output", "format", "tensors_written", "input_bytes", "dense_linears", "experts", "layers"})
    EXPECT_EQ(stored[key], printed[key]) << key;
  EXPECT_LE(stored["seconds"].get<double>(), printed["seconds"].get<double>());
  EXPECT_EQ(stored["format"], "xq");

  auto text = xquant::test::run_xquant({"inspect", out.string()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("report present"), std::string::npos) << text.out.substr(0, 600);
  EXPECT_NE(text.out.find("quantization report:\n  35 Linear modules quantized (mean rel. error "), std::string::npos)
      << text.out;
  const std::string first = printed["layers"][0]["module"];
  const size_t line = text.out.find("\n  " + first + " ");
  ASSERT_NE(line, std::string::npos) << text.out;
  EXPECT_NE(text.out.substr(line, 200).find("int4 sym group32"), std::string::npos) << text.out.substr(line, 200);

  // convert: an xq source's report carries over; a compressed-tensors
  // source has none to carry.
  // (down_proj's 172 columns end in a ragged group, which compressed-tensors
  // writes only when asked.)
  for (const auto& [in, to, format, param] :
       {std::tuple{"rtn.xq", "copy.xq", "xq", ""}, {"rtn.xq", "ct", "compressed-tensors", "allow_ragged_groups=true"},
        {"ct", "from-ct.xq", "xq", ""}}) {
    std::vector<std::string> args = {"convert", "--model", (dir / in).string(), "--out", (dir / to).string(), "--format",
                                     format};
    if (*param) args.insert(args.end(), {"--param", param});
    auto r = xquant::test::run_xquant(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(inspect_json(dir / "copy.xq")["report"], stored);
  EXPECT_FALSE(inspect_json(dir / "from-ct.xq").contains("report"));
}

}  // namespace

}  // namespace test_xq_report
