// model_meta.hpp: what llama.cpp needs to know about the model besides its
// weights: the GGUF architecture, the hyper-parameter keys, the GGUF tensor
// names, the llama Q/K row order and the llama3 RoPE frequency factors.
// Mirrors llama.cpp's convert_hf_to_gguf.py (LlamaModel, Qwen2Model,
// Qwen3Model, Qwen2MoeModel, Qwen3MoeModel; Mixtral as LlamaModel) and is the inverse of the names and permutation that
// ../gguf/gguf_loader.cpp undoes when it reads a GGUF.
#pragma once

#include "gguf_emit.hpp"

#include <xquant/sdk/host.hpp>

#include <optional>
#include <string>
#include <vector>

namespace xquant::gguf {

// GGUF architecture for a canonical `architecture` (llama, mistral and
// mixtral -> llama, qwen2, qwen3, qwen2_moe -> qwen2moe, qwen3_moe ->
// qwen3moe); throws UNSUPPORTED for the others.
std::string gguf_architecture(const std::string& canonical);

// Writes general.* and <arch>.* hyper-parameters from the canonical config.
void write_hparams(Emitter& out, const std::string& arch, const sdk::KvReader& config);

// Routed experts per MoE layer (num_experts, Mixtral's num_local_experts); 0
// for a dense model.
int64_t expert_count(const sdk::KvReader& config);

// Whether llama.cpp's graph for `arch` renormalises the routed top-k weights
// (it fixes this per architecture; build_moe_ffn's norm_w).
bool llama_cpp_renormalises_top_k(const std::string& arch);

// llama3 RoPE scaling: the rope_freqs.weight factors (head_dim / 2 floats)
// convert_hf_to_gguf.py generates; empty when the config has no llama3 scaling.
std::vector<float> llama3_rope_factors(const sdk::KvReader& config);

struct GgufName {
  std::string name;       // "blk.3.attn_q.weight"
  std::string base;       // "attn_q"
  int64_t expert = -1;    // routed expert index within a stacked ffn_*_exps tensor, -1 if none
};
// GGUF name of a canonical (HF) tensor name; nullopt for names llama.cpp
// has no place for.
std::optional<GgufName> gguf_tensor_name(const std::string& hf);

// Heads whose rows llama.cpp's llama architecture stores interleaved
// (q: attention heads, k: KV heads); 0 when rows stay in HF order.
int64_t permuted_heads(const std::string& arch, const std::string& base, const sdk::KvReader& config);

// GGUF row that HF row r of a permuted tensor moves to (inverse of the
// loader's source_row): within a head of hd rows, HF's half-split pair
// (i, i + hd/2) becomes the adjacent pair (2i, 2i + 1).
int64_t gguf_row(int64_t r, int64_t rows, int64_t heads);

}  // namespace xquant::gguf
