// llama_moe_logits.cpp: llama.cpp's own logits for given token ids, every
// position, and its greedy continuation, so tests/interop/moe_gguf_interop.py
// can compare our engine with llama.cpp on the MoE GGUF files our writer
// makes (token ids in, no tokenizer involved). Built against the llama.cpp
// that scripts/fetch-llama-cpp.sh builds, as llama_greedy_ids.cpp is.
//
//   llama_moe_logits MODEL.gguf TOKEN_ID[,TOKEN_ID...] N_PREDICT
//   -> {"logits": [[n_vocab floats] per prompt token], "tokens": [greedy ids]}
//
// The decode loop is llama_greedy_ids.cpp's (examples/simple/simple.cpp),
// with logits requested for every prompt token, an F32 KV cache and no flash
// attention.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace {

void batch_set_tokens(llama_batch_ext* batch, const llama_token* tokens, int32_t n, llama_pos pos_0, bool all_logits) {
  llama_batch_ext_clear(batch);
  for (int32_t i = 0; i < n; ++i) {
    const int32_t idx = llama_batch_ext_add_token(batch, 0, tokens[i]);
    const llama_pos pos = pos_0 + i;
    llama_batch_ext_set_pos(batch, idx, &pos);
    if (all_logits || i == n - 1) llama_batch_ext_set_output_logits(batch, idx, true);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TOKEN_ID[,TOKEN_ID...] N_PREDICT\n", argv[0]);
    return 2;
  }
  std::vector<llama_token> prompt;
  std::stringstream ss(argv[2]);
  for (std::string id; std::getline(ss, id, ',');) prompt.push_back(static_cast<llama_token>(std::atoi(id.c_str())));
  const int n_predict = std::atoi(argv[3]);
  if (prompt.empty() || n_predict < 0) {
    std::fprintf(stderr, "llama_moe_logits: no token ids, or N_PREDICT < 0\n");
    return 2;
  }
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) {
    std::fprintf(stderr, "llama_moe_logits: llama.cpp could not load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  const int n_prompt = static_cast<int>(prompt.size());
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n_prompt + n_predict + 1;
  cp.n_batch = n_prompt;
  cp.n_ubatch = n_prompt;
  // An F32 KV cache (llama.cpp's default is F16) and no flash attention
  // (its CPU kernel rounds through F16), so that F32 files compute in float32
  // throughout, as our engine does.
  cp.type_k = GGML_TYPE_F32;
  cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "llama_moe_logits: could not create a context\n");
    return 1;
  }
  llama_batch_ext* batch = llama_batch_ext_init(ctx);
  batch_set_tokens(batch, prompt.data(), n_prompt, 0, true);
  if (llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, batch)) {
    std::fprintf(stderr, "llama_moe_logits: llama_process failed\n");
    return 1;
  }
  std::printf("{\"logits\": [");
  for (int i = 0; i < n_prompt; ++i) {
    const float* l = llama_get_logits_ith(ctx, i);
    std::printf(i ? ", [" : "[");
    for (int v = 0; v < n_vocab; ++v) std::printf(v ? ", %.9g" : "%.9g", l[v]);
    std::printf("]");
  }
  std::printf("], \"tokens\": [");
  // Greedy: the argmax of the last logits, decoded one token at a time.
  int n_pos = n_prompt;
  for (int k = 0; k < n_predict; ++k) {
    const float* l = llama_get_logits_ith(ctx, -1);
    llama_token next = 0;
    for (int v = 1; v < n_vocab; ++v)
      if (l[v] > l[next]) next = v;
    std::printf(k ? ", %d" : "%d", next);
    batch_set_tokens(batch, &next, 1, n_pos++, false);
    if (llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, batch)) {
      std::fprintf(stderr, "llama_moe_logits: llama_process failed\n");
      return 1;
    }
  }
  std::printf("]}\n");
  llama_batch_ext_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
