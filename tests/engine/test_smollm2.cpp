// test_smollm2.cpp: opt-in check on a real 135M-parameter model:
// SmolLM2-135M-Instruct (Q4_1 GGUF, GPT-2 style BPE, GQA 9/3 heads, tied
// embeddings). Runs only when XQUANT_SMOLLM2_GGUF names the file
// (scripts/fetch-smollm2.sh); skipped otherwise.
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace xquant;

TEST(SmolLM2, LoadsGeneratesAndHasSanePerplexity) {
  const char* path = std::getenv("XQUANT_SMOLLM2_GGUF");
  if (!path || !std::filesystem::exists(path)) GTEST_SKIP() << "set XQUANT_SMOLLM2_GGUF (scripts/fetch-smollm2.sh)";
  Runtime rt{RuntimeOptions{}};
  auto m = Model::open(rt, path);
  EXPECT_EQ(m->arch().n_layers, 30);
  EXPECT_EQ(m->arch().n_kv_heads, 3);
  EXPECT_EQ(m->arch().vocab, 49152);
  GenerateOptions go;
  go.n_tokens = 8;
  auto r = generate(*m, "The capital of France is", go);
  EXPECT_NE(r.text.find("Paris"), std::string::npos) << r.full_text;
  std::ifstream in(std::filesystem::path(XQUANT_SHARED_DIR) / "data/wikitext-2-raw/wiki.test.raw");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str().substr(0, 20000);
  auto ids = eval_tokens(*m, text, 1024);
  auto p = perplexity(*m, ids, 512);
  std::printf("SmolLM2-135M WikiText-2 ppl, first 1024 tokens, ctx 512: %.3f\n", p.perplexity);
  EXPECT_TRUE(std::isfinite(p.perplexity));
  EXPECT_GT(p.perplexity, 5.0);
  EXPECT_LT(p.perplexity, 60.0);
}
