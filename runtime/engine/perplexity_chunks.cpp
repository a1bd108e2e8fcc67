// perplexity_chunks.cpp: llama-perplexity's chunked protocol (see perplexity_chunks.hpp).
#include "engine/perplexity_chunks.hpp"

#include "core/error.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace xquant {

std::vector<int32_t> llama_perplexity_tokens(Model& model, const std::string& text) {
  const Tokenizer& tok = model.tokenizer();
  return tok.encode(text, tok.add_bos_by_default(), /*parse_special=*/false);
}

PerplexityResult perplexity_llama_chunks(Model& model, const std::vector<int32_t>& tokens, int64_t ctx,
                                         int64_t max_chunks, const std::function<void(uint64_t, uint64_t)>& progress) {
  if (ctx < 4) fail(XQ_ERR_INVALID_ARGUMENT, "llama-perplexity chunks need a context of at least 4 tokens (got {})", ctx);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n < 2 * ctx)
    fail(XQ_ERR_INVALID_ARGUMENT, "llama-perplexity chunks of {} tokens need at least {} tokens; the text gives {}", ctx,
         2 * ctx, n);
  const int64_t V = model.arch().vocab;
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= V) fail(XQ_ERR_INVALID_ARGUMENT, "token #{} = {} is outside the vocabulary [0, {})", i, tokens[i], V);
  const Tokenizer& tok = model.tokenizer();
  const bool bos_first = tok.add_bos_by_default() && tok.bos_id() >= 0;
  int64_t chunks = n / ctx;
  if (max_chunks > 0) chunks = std::min(chunks, max_chunks);
  const int64_t first = ctx / 2;
  const int64_t scored_per_chunk = ctx - 1 - first;

  PerplexityResult r;
  r.ctx = ctx;
  r.tokens_total = static_cast<uint64_t>(n);
  auto t0 = std::chrono::steady_clock::now();
  KvCache cache(model, ctx);
  std::vector<int32_t> chunk(static_cast<size_t>(ctx));
  std::vector<double> nll(static_cast<size_t>(scored_per_chunk));
  double total = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int32_t* src = tokens.data() + c * ctx;
    std::copy(src, src + ctx, chunk.begin());
    if (bos_first) chunk[0] = tok.bos_id();
    cache.clear();
    auto logits = model.forward({SequenceInput{&cache, chunk.data(), ctx, true}});
    model.runtime().pool().parallel_for(static_cast<uint64_t>(scored_per_chunk), 8, [&](uint64_t s, uint64_t e) {
      for (uint64_t j = s; j < e; ++j) {
        const int64_t pos = first + static_cast<int64_t>(j);
        nll[j] = token_nll(logits.data() + pos * V, V, chunk[static_cast<size_t>(pos + 1)]);
      }
    });
    for (double v : nll) total += v;
    r.tokens_scored += static_cast<uint64_t>(scored_per_chunk);
    ++r.windows;
    if (progress) progress(r.tokens_scored, static_cast<uint64_t>(chunks * scored_per_chunk));
  }
  r.mean_nll = total / static_cast<double>(r.tokens_scored);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace xquant
