// test_gguf_native.cpp: GGUF block-quantized models run natively by the `cpu`
// provider (blocks borrowed from the loader's mapping, integer block kernels)
// against the same file dequantized to F32 at load.
//
// stories260K is written by our own GGUF writer (plugins/gguf_writer, RTN
// through a pipeline) as Q4_0, Q8_0, Q4_1 and Q5_0 files; each is opened
// natively and with dequantize_all:
//   - every Linear but the F32 ones runs from its blocks, none dequantized;
//   - prefill through dequantize-a-tile + SGEMM (the default above 4 rows)
//     gives the dequantized model's logits within float rounding (1e-4);
//   - the whole perplexity run forced through the integer kernels (and the
//     default Q8_0 tables of a quantized file)
//     (XQUANT_CPU_GEMV_ROWS large: every activation row quantized to int8 per
//     32 columns) stays within 2% of the dequantized model's perplexity, the
//     bound stated for llama.cpp-style Q8 activations (docs/engine.md);
//   - greedy decode (one row: the integer GEMV) still tells the story.
// Opt-in: XQUANT_QWEN25_GGUF (scripts/fetch-qwen25.sh), the real Q4_K_M file
// (Q4_K + Q6_K, tied Q6_K/Q8_0 embedding), loads with no Linear dequantized
// and continues a code prompt sensibly.
#include "scoped_env.hpp"
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

namespace {
const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

using xquant::test::ScopedEnv;

fs::path tmp_dir() { return fs::temp_directory_path() / ("xquant_gguf_native_" + std::to_string(::getpid())); }

// stories260K quantized by RTN and written as a GGUF of `type`.
fs::path write_gguf(const std::string& type, const std::string& weights) {
  fs::path out = tmp_dir() / (type + ".gguf");
  fs::create_directories(out.parent_path());
  std::string yaml = "model:\n  path: " + kGguf.string() + "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n" +
                     "    weights: " + weights + "\nignore: [lm_head]\noutput:\n  format: gguf\n  path: " +
                     out.string() + "\n  params: {type: " + type + "}\n";
  xq_runtime* r = nullptr;
  EXPECT_EQ(xq_runtime_create(nullptr, &r), XQ_OK) << xq_last_error();
  EXPECT_EQ(xq_run_pipeline_string(r, yaml.c_str(), nullptr), XQ_OK) << xq_last_error();
  xq_runtime_destroy(r);
  return out;
}

std::vector<int32_t> eval_ids(Model& m) {
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  return eval_tokens(m, ss.str(), 2048);
}

struct Case {
  const char* type;
  const char* weights;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.type; }

class GgufNative : public ::testing::TestWithParam<Case> {};

TEST_P(GgufNative, MatchesTheDequantizedModel) {
  const Case c = GetParam();
  const fs::path file = write_gguf(c.type, c.weights);
  ModelOptions deq;
  deq.dequantize_all = true;
  auto f32 = Model::open(rt(), file, deq);
  EXPECT_EQ(f32->quantized_linears(), 0);
  auto ids = eval_ids(*f32);
  double p_native_int8 = 0;
  {
    ScopedEnv all_rows_int8("XQUANT_CPU_GEMV_ROWS", "1000000");  // read when the weights are prepared
    auto nat = Model::open(rt(), file);  // tables by default: Q8_0 blocks for a quantized file
    p_native_int8 = perplexity(*nat, ids, 256).perplexity;
  }
  // The Linears' kernels against dequantization: the F32 tables as stored on
  // both sides (the Q8_0 tables a quantized file gets by default are
  // test_compact_tables' subject).
  ModelOptions exact_tables;
  exact_tables.tables = TableForm::kAsStored;
  std::unique_ptr<Model> nat;
  {
    // Float prefill: the 40-row forward below pins dequantize + SGEMM (the
    // default integer prefill of Q4_0 / Q8_0 on AVX-512 is the perplexity above).
    const xquant::test::FloatPrefill float_prefill;  // read when the weights are prepared
    nat = Model::open(rt(), file, exact_tables);
  }
  // 5 layers x 7 Linears; down_proj's 172 columns are not whole 32-blocks: F32 in the file.
  EXPECT_EQ(nat->quantized_linears(), 30) << c.type;
  EXPECT_EQ(nat->dequantized_linears(), 0) << c.type;
  EXPECT_EQ(nat->layer(0).linears[0].layout, "stacked into q|k|v");
  EXPECT_EQ(nat->layer(0).qkv.layout, std::string("ggml-blocks ") + c.type);
  EXPECT_EQ(nat->layer(0).gate_up.layout, std::string("ggml-blocks ") + c.type);
  EXPECT_LT(nat->weight_bytes_per_token(), f32->weight_bytes_per_token());

  std::vector<int32_t> head(ids.begin(), ids.begin() + 40);
  KvCache c1(nat->arch(), 64), c2(f32->arch(), 64);
  auto a = nat->forward({{&c1, head.data(), 40, true}});
  auto b = f32->forward({{&c2, head.data(), 40, true}});
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
  EXPECT_LE(worst, 1e-4) << c.type << ": prefill (dequantize + SGEMM) differs beyond float rounding";

  const double p_f32 = perplexity(*f32, ids, 256).perplexity;
  std::printf("stories260K %s ppl (2048 tokens, ctx 256): dequantized at load %.4f, native int8 activations %.4f (%+.2f%%)\n",
              c.type, p_f32, p_native_int8, 100.0 * (p_native_int8 / p_f32 - 1.0));
  EXPECT_TRUE(std::isfinite(p_native_int8));
  EXPECT_LT(std::fabs(p_native_int8 / p_f32 - 1.0), 0.02) << c.type;

  GenerateOptions go;
  go.n_tokens = 8;
  EXPECT_EQ(generate(*nat, "", go).full_text.rfind("Once upon a time", 0), 0u) << c.type;
  nat.reset();
  f32.reset();
  fs::remove(file);
  fs::remove(tmp_dir());  // only when empty: the last case removes it
}

INSTANTIATE_TEST_SUITE_P(
    Stories260K, GgufNative,
    ::testing::Values(Case{"Q4_0", "{bits: 4, symmetric: true, group_size: 32, scale_dtype: float16}"},
                      Case{"Q8_0", "{bits: 8, symmetric: true, group_size: 32, scale_dtype: float16}"},
                      Case{"Q4_1", "{bits: 4, symmetric: false, group_size: 32, scale_dtype: float16}"},
                      Case{"Q5_0", "{bits: 5, symmetric: true, group_size: 32, scale_dtype: float16}"}),
    [](const auto& info) { return std::string(info.param.type); });

TEST(GgufNativeQwen25, Q4KMRunsFromItsBlocks) {
  const char* path = std::getenv("XQUANT_QWEN25_GGUF");
  if (!path || !*path) GTEST_SKIP() << "XQUANT_QWEN25_GGUF not set (scripts/fetch-qwen25.sh fetches the model)";
  auto m = Model::open(rt(), path);
  EXPECT_EQ(m->dequantized_linears(), 0);
  EXPECT_EQ(m->quantized_linears(), 28 * 7 + 1);  // lm_head: the tied embedding blocks
  EXPECT_NE(m->layer(0).gate_up.layout.find("ggml-blocks"), std::string::npos);
  // Weights read per token stay near the file's size (1.117 GB): no F32 copy anywhere.
  EXPECT_LT(m->weight_bytes_per_token(), 1'200'000'000ull);
  GenerateOptions go;
  go.n_tokens = 12;
  const std::string text = generate(*m, "def fibonacci(n):", go).full_text;
  std::printf("Qwen2.5-Coder-1.5B Q4_K_M, native: %s\n", text.c_str());
  EXPECT_NE(text.find("return"), std::string::npos) << text;
}

}  // namespace
