// test_evaluator.cpp: the held-out evaluator on the real stories260K model
// (KL divergence of the float model against itself is exactly 0; its
// perplexity is the engine's own protocol's), Spearman's rho, and the
// refusal of evaluation text that overlaps the calibration text.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "decide/evaluator.hpp"
#include "decide/overlap.hpp"
#include "engine/evaluate.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

using namespace xquant;

namespace {

const std::string kShared = XQUANT_SHARED_DIR;
const std::string kModel = kShared + "/models/stories260K-hf";
const std::string kVocab = kShared + "/models/stories260K/stories260K.gguf";
const std::string kWiki = kShared + "/data/wikitext-2-raw/wiki.test.raw";
const std::string kStories = kShared + "/data/tinystories/tinystories_val.subset.txt";

RuntimeOptions quiet() {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  return o;
}

}  // namespace

TEST(HeldOutEvaluator, FloatModelAgainstItselfHasZeroKldAndTheEnginesPerplexity) {
  Runtime rt(quiet());
  ModelOptions mo;
  mo.tokenizer_from = kVocab;
  auto model = Model::open(rt, kModel, mo);
  auto tokens = eval_tokens(*model, decide::read_text_file(kWiki, "text"), 600);
  decide::HeldOutEvaluator eval(*model, tokens, 256);
  const decide::Accuracy self = eval.evaluate(*model);
  EXPECT_EQ(self.kld, 0.0);
  const PerplexityResult engine = perplexity(*model, tokens, 256);
  EXPECT_EQ(self.positions, engine.tokens_scored);
  EXPECT_NEAR(self.ppl, engine.perplexity, 1e-6 * engine.perplexity);
}

TEST(HeldOutEvaluator, KldIsPositiveWhenAWeightChanges) {
  Runtime rt(quiet());
  ModelOptions mo;
  mo.tokenizer_from = kVocab;
  mo.dequantize_all = true;
  auto model = Model::open(rt, kModel, mo);
  auto tokens = eval_tokens(*model, decide::read_text_file(kWiki, "text"), 300);
  decide::HeldOutEvaluator eval(*model, tokens, 256);
  for (auto& v : model->layer(1).linears[LayerDesc::kDown].w) v *= 0.5f;
  EXPECT_GT(eval.evaluate(*model).kld, 1e-4);
}

TEST(HeldOutEvaluator, FromACachedLayerEqualsTheWholeForward) {
  // The measured sensitivity evaluates a model that differs from the float
  // one from layer L on, starting at the float hidden states cached there.
  Runtime rt(quiet());
  ModelOptions mo;
  mo.tokenizer_from = kVocab;
  mo.dequantize_all = true;
  auto model = Model::open(rt, kModel, mo);
  auto tokens = eval_tokens(*model, decide::read_text_file(kWiki, "text"), 600);  // 3 windows, the last one short
  decide::HeldOutEvaluator eval(*model, tokens, 256);
  eval.cache_layer_inputs(*model);
  ASSERT_TRUE(eval.has_layer_inputs());
  EXPECT_LT(eval.evaluate_from(*model, 0).kld, 1e-9);
  EXPECT_LT(eval.evaluate_from(*model, 3).kld, 1e-9);
  for (auto& v : model->layer(3).linears[LayerDesc::kDown].w) v *= 0.5f;
  const decide::Accuracy whole = eval.evaluate(*model), from3 = eval.evaluate_from(*model, 3);
  EXPECT_GT(whole.kld, 1e-4);
  EXPECT_NEAR(from3.kld, whole.kld, 1e-4 * whole.kld);
  EXPECT_NEAR(from3.ppl, whole.ppl, 1e-5 * whole.ppl);
  EXPECT_EQ(from3.positions, whole.positions);
}

TEST(Spearman, RanksNotValues) {
  EXPECT_DOUBLE_EQ(decide::spearman({1, 2, 3, 4}, {10, 200, 3000, 40000}), 1.0);
  EXPECT_DOUBLE_EQ(decide::spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_NEAR(decide::spearman({1, 2, 3}, {1, 1, 2}), 0.866, 1e-3);
}

TEST(Overlap, TheCalibrationFileItselfIsRefused) {
  const std::string text = decide::read_text_file(kStories, "text");
  EXPECT_THROW(decide::check_no_overlap(kStories, text, kStories, text), Error);
}

TEST(Overlap, ACopyOfCalibrationPassagesIsRefused) {
  test::TempDir dir;
  const std::string calibration = decide::read_text_file(kStories, "text");
  const std::string copied = "A held-out header line.\n" + calibration.substr(1000, 20000);
  test::write_file(dir / "eval.txt", copied);
  try {
    decide::check_no_overlap(kStories, calibration, dir / "eval.txt", copied);
    FAIL() << "overlap not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overlaps the calibration text"), std::string::npos) << e.what();
  }
}

TEST(Overlap, DisjointTextsPassAndTheReportSaysSo) {
  const std::string calibration = decide::read_text_file(kStories, "text");
  const std::string evaluation = decide::read_text_file(kWiki, "text");
  const std::string note = decide::check_no_overlap(kStories, calibration, kWiki, evaluation);
  EXPECT_NE(note.find("none of 32 sampled"), std::string::npos) << note;
}
