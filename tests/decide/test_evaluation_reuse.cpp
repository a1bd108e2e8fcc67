// test_evaluation_reuse.cpp: the evaluations the decision saves, on the real
// stories260K model. A part of the evaluation windows reuses the whole
// set's float reference bit for bit (no second forward pass); a whole-set
// evaluation joined from a part's result equals the plain one up to the
// order of the additions and runs only the other windows; a group of the
// MLP is evaluated from its layer's MLP half bit for bit; and the decision
// with these shortcuts (plus the fallback's early stop) is the decision
// without them, at fewer evaluated tokens.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "decide/decision.hpp"
#include "decide/evaluator.hpp"
#include "decide/overlap.hpp"
#include "engine/evaluate.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace xquant;

namespace {

const std::string kShared = XQUANT_SHARED_DIR;
const std::string kModel = kShared + "/models/stories260K-hf";
const std::string kVocab = kShared + "/models/stories260K/stories260K.gguf";
const std::string kWiki = kShared + "/data/wikitext-2-raw/wiki.test.raw";

RuntimeOptions quiet() {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  return o;
}

constexpr int64_t kCtx = 256;

// Windows 1, 3 and 5 of `tokens` (kCtx each), concatenated.
std::vector<int32_t> odd_windows(const std::vector<int32_t>& tokens) {
  std::vector<int32_t> out;
  for (int64_t w : {1, 3, 5}) out.insert(out.end(), tokens.begin() + w * kCtx, tokens.begin() + (w + 1) * kCtx);
  return out;
}

void perturb(Model& model, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.02f);
  for (auto& v : model.layer(2).linears[LayerDesc::kDown].w) v += noise(rng);
}

bool same_bits(const decide::Accuracy& a, const decide::Accuracy& b) {
  return a.ppl == b.ppl && a.mean_nll == b.mean_nll && a.kld == b.kld && a.positions == b.positions;
}

}  // namespace

TEST(EvaluationReuse, APartReusesTheWholeReferenceBitForBit) {
  Runtime rt(quiet());
  ModelOptions mo;
  mo.tokenizer_from = kVocab;
  mo.dequantize_all = true;
  auto model = Model::open(rt, kModel, mo);
  auto tokens = eval_tokens(*model, decide::read_text_file(kWiki, "text"), 7 * kCtx + 100);
  ASSERT_GT(tokens.size(), static_cast<size_t>(6 * kCtx));
  decide::HeldOutEvaluator whole(*model, tokens, kCtx);
  const uint64_t one_pass = whole.layer_tokens_run();
  EXPECT_EQ(one_pass, tokens.size() * static_cast<uint64_t>(model->arch().n_layers)) << "the reference runs once";
  decide::HeldOutEvaluator part(whole, {1, 3, 5});
  EXPECT_EQ(part.layer_tokens_run(), 0u);
  decide::HeldOutEvaluator built(*model, odd_windows(tokens), kCtx);
  EXPECT_TRUE(same_bits(part.reference_accuracy(), built.reference_accuracy()));
  EXPECT_EQ(part.reference_accuracy().kld, 0.0);
  EXPECT_TRUE(same_bits(whole.reference_accuracy(), whole.evaluate(*model)));

  perturb(*model, 7);
  const decide::Accuracy on_part = part.evaluate(*model);
  EXPECT_TRUE(same_bits(on_part, built.evaluate(*model)));
  EXPECT_GT(on_part.kld, 1e-5);
  const decide::Accuracy plain = whole.evaluate(*model);
  const uint64_t before = whole.layer_tokens_run();
  const decide::Accuracy joined = whole.evaluate_knowing(*model, part, on_part);
  EXPECT_EQ(whole.layer_tokens_run() - before, (tokens.size() - 3 * kCtx) * static_cast<uint64_t>(model->arch().n_layers));
  EXPECT_EQ(joined.positions, plain.positions);
  EXPECT_NEAR(joined.kld, plain.kld, 1e-12 * plain.kld);
  EXPECT_NEAR(joined.mean_nll, plain.mean_nll, 1e-12 * plain.mean_nll);
}

TEST(EvaluationReuse, AnMlpGroupIsEvaluatedFromItsLayersMlpHalf) {
  Runtime rt(quiet());
  ModelOptions mo;
  mo.tokenizer_from = kVocab;
  mo.dequantize_all = true;
  auto model = Model::open(rt, kModel, mo);
  auto tokens = eval_tokens(*model, decide::read_text_file(kWiki, "text"), 3 * kCtx);
  decide::HeldOutEvaluator eval(*model, tokens, kCtx);
  eval.cache_layer_inputs(*model);
  perturb(*model, 3);  // layer 2's down_proj: its layer's attention half stays the float one
  const decide::Accuracy whole = eval.evaluate(*model);
  EXPECT_GT(whole.kld, 1e-5);
  EXPECT_TRUE(same_bits(eval.evaluate_from(*model, 2, true), whole));
  EXPECT_TRUE(same_bits(eval.evaluate_from(*model, 2, false), whole));
  EXPECT_TRUE(same_bits(eval.evaluate_from(*model, 1, true), whole));  // layer 1 is the float one
}

TEST(EvaluationReuse, MisusedPartsAreRefused) {
  Runtime rt(quiet());
  ModelOptions mo;
  mo.tokenizer_from = kVocab;
  auto model = Model::open(rt, kModel, mo);
  auto tokens = eval_tokens(*model, decide::read_text_file(kWiki, "text"), 4 * kCtx + 10);
  decide::HeldOutEvaluator whole(*model, tokens, kCtx);
  EXPECT_THROW(decide::HeldOutEvaluator(whole, {2, 1}), Error);   // not rising
  EXPECT_THROW(decide::HeldOutEvaluator(whole, {0, 99}), Error);  // no such window
  decide::HeldOutEvaluator part(whole, {0, 2});
  decide::HeldOutEvaluator other(*model, tokens, kCtx);
  EXPECT_THROW(other.evaluate_knowing(*model, part, part.reference_accuracy()), Error);  // not its part
  decide::Accuracy short_count = part.reference_accuracy();
  short_count.positions -= 1;
  EXPECT_THROW(whole.evaluate_knowing(*model, part, short_count), Error);
}

namespace {

decide::Decision decide_with(bool shortcuts) {
  static Runtime rt(quiet());
  Pipeline p = parse_pipeline_text(
      "model: {path: " + kShared + "/models/stories260K-hf}\n"
      "calibration: {text: " + kShared + "/data/tinystories/tinystories_val.subset.txt, tokenizer: " + kVocab +
      ", samples: 8, seq_len: 128}\n"
      "quantize:\n  - algorithm: auto\n    weights: {bits: 4, group_size: 32}\n"
      "ignore: [lm_head]\n"
      "accuracy: {text: " + kWiki + ", metric: kld, max_increase: 0.02, fallback: [int8, bf16], max_tokens: 4096}\n"
      "output: {path: /tmp/unused-decide-evaluation-reuse}\n",
      "evaluation-reuse.yaml", ".");
  validate_with_plugins(p, rt);
  decide::DecideOptions o;
  o.shortcuts = shortcuts;
  return decide::decide(rt, p, o);
}

}  // namespace

TEST(EvaluationReuse, TheDecisionIsTheSameWithFewerEvaluatedTokens) {
  const decide::Decision fast = decide_with(true), plain = decide_with(false);
  ASSERT_EQ(fast.groups.size(), plain.groups.size());
  for (size_t i = 0; i < fast.groups.size(); ++i) EXPECT_EQ(fast.groups[i].chosen, plain.groups[i].chosen) << fast.groups[i].name;
  EXPECT_EQ(fast.fallback.method, plain.fallback.method);
  EXPECT_EQ(fast.fallback.rung_of_group, plain.fallback.rung_of_group);
  EXPECT_EQ(fast.fallback.met, plain.fallback.met);
  ASSERT_EQ(fast.variants.size(), plain.variants.size());
  for (size_t k = 0; k < fast.variants.size(); ++k) {
    EXPECT_EQ(fast.variants[k].name, plain.variants[k].name);
    EXPECT_EQ(fast.variants[k].bytes, plain.variants[k].bytes);
    EXPECT_NEAR(fast.variants[k].accuracy.kld, plain.variants[k].accuracy.kld, 1e-12) << fast.variants[k].name;
  }
  EXPECT_LT(fast.layer_tokens_evaluated, plain.layer_tokens_evaluated);
  // A method stopped on the subset is never the one written, and only when
  // another already met the target with fewer bytes.
  for (const auto& m : fast.fallback_methods)
    if (!m.settled.empty()) {
      EXPECT_NE(m.method, fast.fallback.method);
      EXPECT_TRUE(fast.fallback.met);
      EXPECT_GT(m.final_on_subset.bytes, fast.fallback.steps.back().bytes);
    }
}
