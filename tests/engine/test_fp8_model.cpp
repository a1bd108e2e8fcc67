// test_fp8_model.cpp: FP8 checkpoints of stories260K-hf (real weights), written
// by the pipeline (rtn, compressed-tensors float-quantized) and run by the
// engine with no FP8-specific engine code: FP8 W8A8 dynamic per channel
// (compressed-tensors' FP8_DYNAMIC) and FP8 weight-only per tensor. Every
// Linear must run quantized on the `cpu` provider; the weight-only model's
// QMATMUL logits must equal the dequantize-on-load path's; perplexity must
// stay close to F32's.
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

fs::path make_fp8(const std::string& name, const std::string& scheme_yaml) {
  return test::quantize_stories_rtn("xquant_fp8_test", name, scheme_yaml);
}

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

std::vector<int32_t> eval_ids(Model& m) { return test::tinystories_eval_ids(m); }
}  // namespace

TEST(Fp8Models, Fp8DynamicAndWeightOnlyRunQuantizedOnTheCpuProvider) {
  fs::path dyn = make_fp8("fp8-dynamic", "    weights:\n      type: float\n      bits: 8\n"
                                         "    activations:\n      bits: 8\n      strategy: token\n");
  fs::path wo = make_fp8("fp8-tensor", "    weights:\n      type: float\n      bits: 8\n      strategy: tensor\n");
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto fp = Model::open(rt(), kGguf);
  auto q8 = Model::open(rt(), dyn, mo);
  auto qw = Model::open(rt(), wo, mo);
  EXPECT_EQ(q8->quantized_linears(), 35);
  EXPECT_EQ(q8->dequantized_linears(), 0);
  EXPECT_EQ(qw->quantized_linears(), 35);
  const LinearWeights& q0 = q8->layer(0).qkv.desc ? q8->layer(0).qkv : q8->layer(0).linears[0];
  EXPECT_EQ(q0.layout, "cpu-fp8-f32");

  // Weight-only QMATMUL == the canonical dequantization (e4m3 * scale) on load,
  // the lm_head held as stored on both sides (Q8_0 blocks by default for a
  // quantized checkpoint: test_quantized_models).
  ModelOptions md = mo;
  md.dequantize_all = true;
  auto qwf = Model::open(rt(), wo, md);
  EXPECT_EQ(qwf->quantized_linears(), 0);
  ModelOptions exact_tables = mo;
  exact_tables.tables = TableForm::kAsStored;
  auto qwx = Model::open(rt(), wo, exact_tables);
  auto ids = eval_ids(*fp);
  std::vector<int32_t> head(ids.begin(), ids.begin() + 40);
  KvCache c1(qwx->arch(), 64), c2(qwf->arch(), 64);
  auto a = qwx->forward({{&c1, head.data(), 40, true}});
  auto b = qwf->forward({{&c2, head.data(), 40, true}});
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (double)std::fabs(a[i] - b[i]));
  EXPECT_LE(worst, 1e-4);

  const double p_fp = perplexity(*fp, ids, 512).perplexity;
  const double p_dyn = perplexity(*q8, ids, 512).perplexity;
  const double p_wo = perplexity(*qw, ids, 512).perplexity;
  std::printf("stories260K ppl (4096 tokens, ctx 512): f32 %.4f, FP8 W8A8 dynamic (channel) %.4f (%+.2f%%), "
              "FP8 weight-only (tensor) %.4f (%+.2f%%)\n",
              p_fp, p_dyn, 100 * (p_dyn / p_fp - 1), p_wo, 100 * (p_wo / p_fp - 1));
  EXPECT_TRUE(std::isfinite(p_dyn) && std::isfinite(p_wo));
  EXPECT_LT(std::fabs(p_dyn / p_fp - 1.0), 0.03);
  EXPECT_LT(std::fabs(p_wo / p_fp - 1.0), 0.03);
  GenerateOptions go;
  go.n_tokens = 8;
  EXPECT_EQ(generate(*q8, "", go).full_text.rfind("Once upon a time", 0), 0u);
  fs::remove_all(dyn.parent_path());
}
