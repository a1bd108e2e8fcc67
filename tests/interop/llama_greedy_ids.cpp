// llama_greedy_ids.cpp: greedy generation with llama.cpp's own library,
// printing token ids (llama.cpp's example tools print only text), so
// tests/interop/llamacpp_interop.py can compare our engine's ids with
// llama.cpp's one for one. Built against the llama.cpp that
// scripts/fetch-llama-cpp.sh builds (not part of xquant's CMake build).
//
//   llama_greedy_ids MODEL.gguf N_PREDICT PROMPT
//   -> {"prompt_tokens": [...], "tokens": [...]} on stdout
//
// The loop follows llama.cpp's examples/simple/simple.cpp: the prompt is
// tokenized with the vocabulary's default specials and special-token parsing
// (llama_tokenize(..., add_special=true, parse_special=true)), decoded as one
// batch, then one token at a time with the greedy sampler, stopping at an
// end-of-generation token.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// Tokens at consecutive positions from pos_0; logits only for the last one.
void batch_set_tokens(llama_batch_ext* batch, const llama_token* tokens, int32_t n, llama_pos pos_0) {
  llama_batch_ext_clear(batch);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t idx = llama_batch_ext_add_token(batch, 0, tokens[i]);
    const llama_pos pos = pos_0 + i;
    llama_batch_ext_set_pos(batch, idx, &pos);
  }
  llama_batch_ext_set_output_logits(batch, n - 1, true);
}

void print_ids(const char* key, const std::vector<llama_token>& ids, const char* end) {
  std::printf("\"%s\": [", key);
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? ", %d" : "%d", ids[i]);
  std::printf("]%s", end);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf N_PREDICT PROMPT\n", argv[0]);
    return 2;
  }
  const std::string prompt = argv[3];
  const int n_predict = std::atoi(argv[2]);
  if (n_predict < 1) {
    std::fprintf(stderr, "llama_greedy_ids: N_PREDICT must be >= 1\n");
    return 2;
  }
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) {
    std::fprintf(stderr, "llama_greedy_ids: llama.cpp could not load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_prompt = -llama_tokenize(vocab, prompt.c_str(), prompt.size(), nullptr, 0, true, true);
  std::vector<llama_token> prompt_tokens(n_prompt);
  if (n_prompt < 1 ||
      llama_tokenize(vocab, prompt.c_str(), prompt.size(), prompt_tokens.data(), n_prompt, true, true) < 0) {
    std::fprintf(stderr, "llama_greedy_ids: the prompt gives no tokens\n");
    return 1;
  }
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n_prompt + n_predict;
  cp.n_batch = n_prompt;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "llama_greedy_ids: could not create a context\n");
    return 1;
  }
  llama_sampler* smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
  llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
  llama_batch_ext* batch = llama_batch_ext_init(ctx);
  batch_set_tokens(batch, prompt_tokens.data(), n_prompt, 0);

  std::vector<llama_token> generated;
  int n_pos = 0, n_batch = n_prompt;
  while (static_cast<int>(generated.size()) < n_predict) {
    if (llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, batch)) {
      std::fprintf(stderr, "llama_greedy_ids: llama_process failed\n");
      return 1;
    }
    n_pos += n_batch;
    llama_token next = llama_sampler_sample(smpl, ctx, -1);
    if (llama_vocab_is_eog(vocab, next)) break;
    generated.push_back(next);
    batch_set_tokens(batch, &next, 1, n_pos);
    n_batch = 1;
  }
  std::printf("{");
  print_ids("prompt_tokens", prompt_tokens, ", ");
  print_ids("tokens", generated, "}\n");
  llama_batch_ext_free(batch);
  llama_sampler_free(smpl);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
