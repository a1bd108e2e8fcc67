// evaluate.hpp: what the engine is used for: perplexity under a fixed,
// documented protocol and text generation. Shared by the CLI (`xquant eval`,
// `xquant generate`), the C API (xq_model_perplexity / xq_model_generate),
// tests and benchmarks, so every number comes from the same code.
//
// Perplexity protocol (docs/engine.md; the GPTQ/AWQ papers' one): the whole
// text is tokenized once with a single BOS at the start, cut into
// consecutive non-overlapping windows of `ctx` tokens (the last one may be
// shorter), each window is evaluated from an empty KV cache, and every
// token of a window except its first is scored by -log p(token | window
// prefix). mean_nll is the mean over scored tokens; perplexity = exp(mean_nll).
#pragma once

#include "engine/model.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace xquant {

struct PerplexityResult {
  double mean_nll = 0, perplexity = 0;
  uint64_t tokens_scored = 0, tokens_total = 0, windows = 0;
  int64_t ctx = 0;
  double seconds = 0;
};

// BOS + tokenize(text), truncated to max_tokens (0 = all).
std::vector<int32_t> eval_tokens(Model& model, const std::string& text, uint64_t max_tokens);

// Runs the protocol on `tokens` (already including the BOS). `progress`
// (may be null) receives scored-so-far and the total to score.
PerplexityResult perplexity(Model& model, const std::vector<int32_t>& tokens, int64_t ctx,
                            const std::function<void(uint64_t, uint64_t)>& progress = nullptr);

// -log softmax(logits)[target], in double.
double token_nll(const float* logits, int64_t vocab, int32_t target);

struct GenerateOptions {
  int64_t n_tokens = 64;
  float temperature = 0.0f;  // 0 = greedy (argmax, lowest id on ties)
  uint64_t seed = 0;
  bool stop_at_eog = true;
};

struct GenerateResult {
  std::vector<int32_t> prompt_tokens, tokens;  // tokens = generated only
  std::string text;       // the generated continuation as text
  std::string full_text;  // prompt + continuation, decoded together (exact spacing)
  double prefill_seconds = 0, decode_seconds = 0;
  // What the decode steps (every step after the prompt's) cost in kernel
  // provider ops and thread-pool traffic: counters, comparable per token
  // whatever the machine's load (ThreadPoolStats says what each counts).
  int64_t decode_steps = 0;
  uint64_t decode_ops = 0, decode_pool_jobs = 0, decode_pool_wakeups = 0, decode_pool_parks = 0;
};

// Token-level generation (no tokenizer needed): `prompt` must be non-empty.
// `on_token` (may be null) is called with each new id.
GenerateResult generate_tokens(Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& options,
                               const std::function<void(int32_t)>& on_token = nullptr);

// Text-level: the prompt is tokenized (BOS prepended when the tokenizer adds
// one by default, or when the prompt is empty), the output decoded.
GenerateResult generate(Model& model, const std::string& prompt, const GenerateOptions& options,
                        const std::function<void(const std::string&)>& on_piece = nullptr);

}  // namespace xquant
