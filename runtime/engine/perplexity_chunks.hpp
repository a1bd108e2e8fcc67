// perplexity_chunks.hpp: perplexity under llama.cpp's `llama-perplexity`
// protocol, so our engine and llama.cpp can be compared on the same windows
// of the same tokens (tests/interop/llamacpp_interop.sh).
//
// The protocol (llama.cpp tools/perplexity/perplexity.cpp, function
// perplexity(), the default path without --ppl-stride): the whole text is
// tokenized once with the vocabulary's default specials (BOS when
// tokenizer.ggml.add_bos_token says so); it is cut into floor(n / ctx)
// consecutive chunks of exactly ctx tokens (a shorter tail is dropped; at
// least 2 chunks' worth of tokens are required); the first token of each
// chunk is replaced by BOS when the vocabulary adds one; each chunk is
// evaluated from an empty KV cache, and only its second half is scored:
// the logits at positions ctx/2 .. ctx-2 against the tokens at
// ctx/2+1 .. ctx-1 (ctx - 1 - ctx/2 tokens per chunk).
// mean_nll is the mean over scored tokens; perplexity = exp(mean_nll),
// which is what llama-perplexity prints as "Final estimate: PPL".
#pragma once

#include "engine/evaluate.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace xquant {

// tokenize(text) with the vocabulary's default BOS, as llama-perplexity does.
std::vector<int32_t> llama_perplexity_tokens(Model& model, const std::string& text);

// Runs the protocol above on `tokens`; max_chunks > 0 keeps only the first
// max_chunks chunks (llama-perplexity's --chunks). `windows` in the result is
// the number of chunks evaluated.
PerplexityResult perplexity_llama_chunks(Model& model, const std::vector<int32_t>& tokens, int64_t ctx,
                                         int64_t max_chunks,
                                         const std::function<void(uint64_t, uint64_t)>& progress = nullptr);

}  // namespace xquant
