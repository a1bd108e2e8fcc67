// test_quantized_models.cpp: pipeline outputs run in the engine with no
// code change. stories260K-hf is quantized through the public C API
// (RTN int4 group 32, and W8A8 int8 per-channel with dynamic per-token
// activations) into compressed-tensors checkpoints in a temp folder; the
// engine must run every Linear quantized on the `cpu` provider, the
// weight-only model's QMATMUL logits must equal the dequantize-on-load
// path's, and perplexity must degrade in the expected order.
#include "scoped_env.hpp"
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"
#include "stories_quantized.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

using namespace xquant;
namespace fs = std::filesystem;

namespace {
const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";

fs::path make_quantized(const std::string& name, const std::string& scheme_yaml) {
  return test::quantize_stories_rtn("xquant_engine_test", name, scheme_yaml);
}

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

std::vector<int32_t> eval_ids(Model& m) { return test::tinystories_eval_ids(m); }
}  // namespace

TEST(QuantizedModels, RtnInt4AndW8A8RunQuantizedOnTheProvider) {
  // Packed kernels against dequantized F32 weights within float rounding:
  // float activations for the 40-row prefill below.
  const xquant::test::FloatPrefill float_prefill;
  fs::path int4 = make_quantized("rtn-int4-g32", "    weights:\n      bits: 4\n      symmetric: true\n      group_size: 32\n");
  fs::path w8a8 = make_quantized("w8a8", "    weights:\n      bits: 8\n      symmetric: true\n"
                                         "    activations:\n      bits: 8\n      strategy: token\n");
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto fp = Model::open(rt(), kGguf);
  auto q4 = Model::open(rt(), int4, mo);
  auto q8 = Model::open(rt(), w8a8, mo);
  EXPECT_EQ(q4->quantized_linears(), 35);
  EXPECT_EQ(q4->dequantized_linears(), 0);
  EXPECT_EQ(q8->quantized_linears(), 35);
  EXPECT_EQ(q4->layer(0).linears[0].layout, "stacked into q|k|v");  // one GEMV for q|k|v on cpu too
  EXPECT_EQ(q4->layer(0).qkv.layout, "cpu-int8-group");
  EXPECT_LT(q4->weight_bytes_per_token(), fp->weight_bytes_per_token());

  // QMATMUL (fused GEMV for one row, tile + SGEMM for many) == dequantized F32
  // weights, the lm_head held as stored on both sides (a quantized checkpoint
  // holds it as Q8_0 blocks by default: QuantizedCheckpointTablesAreQ8_0ByDefault).
  ModelOptions md = mo;
  md.dequantize_all = true;
  auto q4f = Model::open(rt(), int4, md);
  EXPECT_EQ(q4f->quantized_linears(), 0);
  ModelOptions exact_tables = mo;
  exact_tables.tables = TableForm::kAsStored;
  auto q4x = Model::open(rt(), int4, exact_tables);
  auto ids = eval_ids(*fp);
  std::vector<int32_t> head(ids.begin(), ids.begin() + 40);
  KvCache c1(q4x->arch(), 64), c2(q4f->arch(), 64);
  auto a = q4x->forward({{&c1, head.data(), 40, true}});
  auto b = q4f->forward({{&c2, head.data(), 40, true}});
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (double)std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, 1e-4);

  double p_fp = perplexity(*fp, ids, 512).perplexity;
  double p_q4 = perplexity(*q4, ids, 512).perplexity;
  double p_q8 = perplexity(*q8, ids, 512).perplexity;
  std::printf("stories260K ppl (4096 tokens, ctx 512): f32 %.4f, W8A8 %.4f, RTN int4 g32 %.4f\n", p_fp, p_q8, p_q4);
  EXPECT_TRUE(std::isfinite(p_q4) && std::isfinite(p_q8));
  EXPECT_LT(std::fabs(p_q8 / p_fp - 1.0), 0.02);  // W8A8 is near-lossless
  EXPECT_GT(p_q4, p_fp);                           // 4-bit RTN costs something...
  EXPECT_LT(p_q4, 1.5 * p_fp);                     // ...but does not break the model
  GenerateOptions go;
  go.n_tokens = 8;
  EXPECT_EQ(generate(*q8, "", go).full_text.rfind("Once upon a time", 0), 0u);
  fs::remove_all(int4.parent_path());
}

// A quantized checkpoint's float tables are held as ggml Q8_0 blocks unless
// asked otherwise (as llama.cpp's quantizer writes the output matrix), a
// float checkpoint's as stored; stories260K-hf's tied F32 table here.
TEST(QuantizedModels, QuantizedCheckpointTablesAreQ8_0ByDefault) {
  fs::path int4 = make_quantized("rtn-int4-g32-tables", "    weights:\n      bits: 4\n      symmetric: true\n      group_size: 32\n");
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto fp = Model::open(rt(), kGguf);
  auto q4 = Model::open(rt(), int4, mo);
  ModelOptions exact_tables = mo;
  exact_tables.tables = TableForm::kAsStored;
  auto q4x = Model::open(rt(), int4, exact_tables);
  EXPECT_EQ(fp->lm_head().layout, "f32");
  EXPECT_EQ(q4->lm_head().layout, "ggml-blocks Q8_0 (tied embeddings)");
  EXPECT_EQ(q4x->lm_head().layout, "f32 (tied embeddings)");
  const uint64_t table = static_cast<uint64_t>(q4->arch().vocab * q4->arch().hidden);
  EXPECT_EQ(q4x->weight_bytes_per_token() - q4->weight_bytes_per_token(), table * 4 - table / 32 * 34);
  auto ids = eval_ids(*fp);
  ids.resize(1024);
  const double p_q8 = perplexity(*q4, ids, 256).perplexity, p_x = perplexity(*q4x, ids, 256).perplexity;
  std::printf("stories260K RTN int4 g32 ppl (1024 tokens, ctx 256): tables as stored %.5f, Q8_0 %.5f (%+.3f%%)\n", p_x,
              p_q8, 100.0 * (p_q8 / p_x - 1.0));
  EXPECT_LT(std::fabs(p_q8 / p_x - 1.0), 0.005);
  fs::remove_all(int4.parent_path());
}

// weight_bytes_per_token counts what the cpu provider holds: at 4 bits and
// group 32, every group is one 32-column block of 16 bytes plus one f32
// scale, so 20 bytes per group, 0.625 bytes per weight (not a byte per code).
// down_proj's 172 inputs are no multiple of 32, so the pipeline quantizes it
// per channel: 6 blocks (the last padded) and one scale per row.
TEST(QuantizedModels, Int4BytesAreThePackedLayoutsBytes) {
  fs::path int4 = make_quantized("rtn-int4-g32-bytes", "    weights:\n      bits: 4\n      symmetric: true\n      group_size: 32\n");
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto q4 = Model::open(rt(), int4, mo);
  const LayerWeights& l0 = q4->layer(0);
  auto expect_packed = [](const LinearWeights& lw) {
    ASSERT_NE(lw.desc, nullptr);
    const uint64_t blocks = static_cast<uint64_t>((lw.desc->in + 31) / 32);
    const uint64_t scales = lw.desc->in % 32 == 0 ? blocks : 1;
    EXPECT_EQ(lw.bytes, static_cast<uint64_t>(lw.desc->out) * (blocks * 16 + scales * 4)) << lw.desc->module;
  };
  expect_packed(l0.qkv);
  expect_packed(l0.gate_up);
  expect_packed(l0.linears[LayerDesc::kO]);
  expect_packed(l0.linears[LayerDesc::kDown]);
  fs::remove_all(int4.parent_path());
}
