// test_perplexity_chunks.cpp: llama-perplexity's chunked protocol
// (engine/perplexity_chunks.hpp) on the real stories260K model: chunk count,
// scored-token count, the BOS that starts every chunk, the second-half-only
// scoring recomputed by hand from the model's logits, and the errors.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/perplexity_chunks.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;

Model& stories() {
  static Runtime rt{RuntimeOptions{}};
  static auto m = Model::open(rt, kShared / "models/stories260K/stories260K.gguf");
  return *m;
}

std::string wikitext() {
  std::ifstream in(kShared / "data/wikitext-2-raw/wiki.test.raw");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str().substr(0, 6000);
}

// Mean NLL of llama-perplexity's chunks, recomputed from the full logits.
double by_hand(Model& m, const std::vector<int32_t>& tokens, int64_t ctx, int64_t chunks) {
  const int64_t V = m.arch().vocab, first = ctx / 2;
  double sum = 0;
  int64_t n = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    chunk[0] = m.tokenizer().bos_id();
    KvCache cache(m.arch(), ctx);
    auto logits = m.forward({{&cache, chunk.data(), ctx, true}});
    for (int64_t pos = first; pos < ctx - 1; ++pos, ++n) sum += token_nll(logits.data() + pos * V, V, chunk[pos + 1]);
  }
  return sum / static_cast<double>(n);
}

}  // namespace

TEST(PerplexityChunks, MatchesTheProtocolByHand) {
  Model& m = stories();
  auto tokens = llama_perplexity_tokens(m, wikitext());
  ASSERT_TRUE(m.tokenizer().add_bos_by_default());  // SentencePiece: llama.cpp adds BOS
  EXPECT_EQ(tokens[0], m.tokenizer().bos_id());
  ASSERT_GT(tokens.size(), 4u * 128);
  auto r = perplexity_llama_chunks(m, tokens, 128, 3);
  EXPECT_EQ(r.windows, 3u);
  EXPECT_EQ(r.tokens_scored, 3u * (127 - 64));
  EXPECT_NEAR(r.mean_nll, by_hand(m, tokens, 128, 3), 1e-9);
  EXPECT_NEAR(r.perplexity, std::exp(r.mean_nll), 1e-9 * r.perplexity);
  // --chunks 0: every whole chunk; the tail shorter than ctx is dropped.
  auto all = perplexity_llama_chunks(m, tokens, 128, 0);
  EXPECT_EQ(all.windows, tokens.size() / 128);
}

TEST(PerplexityChunks, RefusesTooFewTokensAndTinyContexts) {
  Model& m = stories();
  auto tokens = llama_perplexity_tokens(m, wikitext());
  std::vector<int32_t> short_text(tokens.begin(), tokens.begin() + 255);
  EXPECT_THROW(perplexity_llama_chunks(m, short_text, 128, 0), Error);  // needs 2 * ctx
  EXPECT_THROW(perplexity_llama_chunks(m, tokens, 3, 0), Error);
  std::vector<int32_t> bad = tokens;
  bad[5] = static_cast<int32_t>(m.arch().vocab);
  EXPECT_THROW(perplexity_llama_chunks(m, bad, 128, 0), Error);
}
