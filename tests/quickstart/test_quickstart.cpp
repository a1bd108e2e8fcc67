// test_quickstart.cpp: the README's main job on the real stories260K
// checkpoint: examples/quickstart.yaml through the real plugins
// (safetensors -> rtn -> compressed-tensors), then the output read back:
// every quantized Linear's codes and scales equal an independent RTN of the
// source weights, dense tensors are byte-identical, the config carries the
// quantization_config vLLM reads, and a failing run leaves nothing behind.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "checkpoint/linear_modules.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"

#include <nlohmann/json.hpp>
#include <xquant/sdk/quantizer.hpp>

#include "test_files.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace xquant;

namespace {

const fs::path kModel = fs::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";

using test::TempDir;

RuntimeOptions quiet() {
  RuntimeOptions o;
  o.log_level = XQ_LOG_WARN;
  return o;
}

}  // namespace

TEST(Quickstart, RealModelEndToEnd) {
  Runtime rt(quiet());
  TempDir tmp;
  Pipeline p = parse_pipeline_file(fs::path(XQUANT_SOURCE_DIR) / "examples" / "quickstart.yaml");
  p.output_path = tmp.path() / "out";
  RunReport report = run_pipeline(rt, p);

  // 5 layers x 7 Linears, lm_head absent (tied) so nothing else.
  ASSERT_EQ(report.layers.size(), 35u);
  for (const auto& l : report.layers) {
    EXPECT_GT(l.rel_error, 0.0) << l.module;
    EXPECT_LT(l.rel_error, 0.2) << l.module;  // INT4 g32 on real weights
  }

  auto src = Checkpoint::open(rt, kModel);
  auto out = Checkpoint::open(rt, p.output_path);
  ASSERT_NE(out->quant_format(), nullptr);
  EXPECT_EQ(out->quant_format()->name(), "compressed-tensors");

  // quantization_config as compressed-tensors writes it.
  auto cfg = nlohmann::json::parse(out->config().get_string("quantization_config", "{}"));
  EXPECT_EQ(cfg["quant_method"], "compressed-tensors");
  EXPECT_EQ(cfg["format"], "pack-quantized");
  // Two schemes: groups of 32, and per-channel for the 172-wide down_proj.
  ASSERT_EQ(cfg["config_groups"].size(), 2u);
  int grouped = 0, channel = 0;
  for (const auto& [name, group] : cfg["config_groups"].items()) {
    EXPECT_EQ(group["weights"]["num_bits"], 4);
    EXPECT_EQ(group["weights"]["symmetric"], true);
    if (group["weights"]["strategy"] == "group") {
      EXPECT_EQ(group["weights"]["group_size"], 32);
      ++grouped;
    } else {
      EXPECT_EQ(group["weights"]["strategy"], "channel");
      for (const auto& t : group["targets"]) EXPECT_NE(t.get<std::string>().find("down_proj"), std::string::npos) << t;
      ++channel;
    }
  }
  EXPECT_EQ(grouped, 1);
  EXPECT_EQ(channel, 1);
  EXPECT_EQ(cfg["ignore"], nlohmann::json::array({"lm_head"}));

  sdk::quant::Scheme scheme;
  scheme.bits = 4;
  scheme.symmetric = true;
  scheme.strategy = XQ_STRATEGY_GROUP;
  scheme.group_size = 32;
  scheme.scale_dtype = XQ_DTYPE_F32;
  size_t checked = 0;
  for (const auto& module : linear_modules(*src)) {
    auto q = out->read_module(module);
    ASSERT_TRUE(q.has_value()) << module << " was not stored quantized";
    const TensorEntry& t = src->require(module + ".weight");
    std::vector<float> w = src->read_f32(t);
    const int64_t rows = t.shape[0], cols = t.shape[1];
    ASSERT_EQ(q->get().rows, rows);
    ASSERT_EQ(q->get().cols, cols);
    // down_proj has 172 input columns: compressed-tensors stores whole groups
    // only, so the runner falls back to per-channel there.
    sdk::quant::Scheme s = scheme;
    if (cols % 32 != 0) s.strategy = XQ_STRATEGY_CHANNEL;
    EXPECT_EQ(q->get().strategy, s.strategy) << module;
    const int64_t ng = s.groups(cols);
    ASSERT_EQ(q->get().n_groups, ng);
    std::vector<int8_t> codes(rows * cols);
    std::vector<float> scales(rows * ng);
    sdk::quant::rtn_rows_sums(s, w.data(), cols, 0, rows, codes.data(), scales.data(), nullptr);
    ASSERT_EQ(std::memcmp(codes.data(), q->get().codes, codes.size()), 0) << module;
    for (size_t i = 0; i < scales.size(); ++i) ASSERT_EQ(scales[i], q->get().scales[i]) << module << " scale " << i;
    ++checked;
  }
  EXPECT_EQ(checked, 35u);

  // Dense tensors (norms, embeddings) byte-identical to the source.
  for (const auto& t : src->tensors()) {
    if (!linear_module_of(t).empty()) continue;
    const TensorEntry& o = out->require(t.name);
    auto a = src->raw(t), b = out->raw(o);
    ASSERT_EQ(a.nbytes, b.nbytes) << t.name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << t.name;
  }
  // Nothing temporary left behind.
  for (const auto& e : fs::directory_iterator(p.output_path))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
}

TEST(Quickstart, FailedRunLeavesNoOutput) {
  Runtime rt(quiet());
  TempDir tmp;
  // group_size 0 cannot be expressed in YAML (rejected), so make the writer
  // fail instead: the output path is an existing regular file.
  fs::path blocker = tmp.path() / "not-a-folder";
  std::ofstream(blocker) << "x";
  Pipeline p = parse_pipeline_text("model: {path: " + kModel.string() + "}\nquantize: [{algorithm: rtn, weights: {bits: 4}}]\n"
                                   "output: {path: " + (blocker / "out").string() + "}\n", "p.yaml", tmp.path());
  EXPECT_THROW(run_pipeline(rt, p), Error);
  EXPECT_FALSE(fs::exists(blocker / "out"));
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path())) ++entries;
  EXPECT_EQ(entries, 1u);  // only the blocker itself
}
