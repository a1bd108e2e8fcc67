// architecture.hpp: what a decoder-only Llama-family model is made of, read
// from the canonical configuration (xq_kv filled by a loader).
//
// One description shared by the inference engine (which ops to run on which
// tensors), the calibration capture (which Linears share an input) and the
// quantization pipeline (layer groups handed to algorithms). Supported
// model_types: llama, mistral, qwen2 (q/k/v biases), qwen3 (q/k RMS norms),
// and the Mixture-of-Experts decoders qwen3_moe, qwen2_moe (a shared expert
// behind a sigmoid gate) and mixtral (see MoeDesc).
// All canonical checkpoints store Q/K rows in HF half-split order, so the
// RoPE pairing is NEOX; the field exists so a non-canonical source could say
// otherwise.
#pragma once

#include "core/kv.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace xquant {

enum class RopePairing { Neox = 0, Norm = 1 };  // values = XQ_OP_ROPE i[0]

// One Linear y = x W^T (+ b). `module` is the HF module name without
// ".weight" (e.g. "model.layers.0.self_attn.q_proj").
struct LinearDesc {
  std::string module;
  std::string role;  // q, k, v, o, gate, up, down
  int64_t out = 0, in = 0;
  bool bias = false;
  std::string weight_name() const { return module + ".weight"; }
  std::string bias_name() const { return module + ".bias"; }
};

// Linears that read the same input (what an algorithm quantizes together
// and what calibration collects statistics for once). `prev_norm` is the
// RMSNorm weight producing that input, or "" (o_proj, down_proj).
struct LinearGroupDesc {
  std::string name;            // e.g. "model.layers.0.attn_in"
  std::string prev_norm;       // tensor name or ""
  std::vector<int> linears;    // indices into LayerDesc::linears
  // The Linear whose output rows feed this group (v for o, up for down), or
  // -1: what AWQ may rescale when there is no norm.
  int prev_linear = -1;
  // Sequential calibration runs one pass per stage: groups of one stage do
  // not feed each other (every expert's down_proj reads only its own
  // expert's gate/up). Dense layers: stage = group index.
  int stage = 0;
  // A statistics-only group (MoE: one expert's gate/up over the tokens
  // routed to it): its statistics replace the quantization group's for
  // its Linears, but no algorithm runs on it; its Linears are quantized
  // with the group they also belong to (mlp_in, one smoothing vector).
  bool stats_only = false;
};

// A Mixture-of-Experts MLP block (transformers' Qwen3MoeSparseMoeBlock,
// Qwen2MoeSparseMoeBlock, MixtralSparseMoeBlock): router logits = x Wr^T,
// p = softmax(logits), the top_k experts per token, their weights p_e
// (divided by their sum when norm_topk_prob; Mixtral always does, which
// equals a softmax over the top-k logits), out = sum_e p_e * down_e(silu(
// gate_e x) * up_e x) [+ sigmoid(x Wsg^T) * shared_expert(x)].
struct MoeDesc {
  int64_t n_experts = 0, top_k = 0, expert_intermediate = 0, shared_intermediate = 0;  // shared 0: none
  bool norm_topk_prob = false;
  int router = -1;                          // LayerDesc::linears index of the router (mlp.gate)
  std::vector<int> gate, up, down;          // per expert: linears indices
  int shared_gate = -1, shared_up = -1, shared_down = -1, shared_expert_gate = -1;
  std::vector<int> expert_in_group, expert_out_group;  // per expert: groups indices
  int shared_out_group = -1;
};

struct LayerDesc {
  int index = 0;
  std::string input_norm, post_norm;  // tensor names
  std::string q_norm, k_norm;         // qwen3 only, else ""
  std::vector<LinearDesc> linears;    // q, k, v, o, gate, up, down (this order)
  std::vector<LinearGroupDesc> groups;  // attn_in {q,k,v}, attn_out {o}, mlp_in {gate,up}, mlp_out {down}
  // MoE layers: linears are q, k, v, o, router, then gate/up/down of every
  // expert, then the shared expert's gate/up/down and shared_expert_gate;
  // groups are attn_in, attn_out, mlp_in {router, shared gate/up,
  // shared_expert_gate, every expert's gate/up}, each expert's down, the
  // shared down, then one statistics-only group per expert's gate/up.
  bool moe = false;
  MoeDesc experts;
  // Number of groups that quantize (the statistics-only ones come last).
  int quant_groups() const;

  // Group indices (fixed order of `groups`).
  static constexpr int kAttnIn = 0, kAttnOut = 1, kMlpIn = 2, kMlpOut = 3;
  // Linear indices (fixed order of `linears`).
  static constexpr int kQ = 0, kK = 1, kV = 2, kO = 3, kGate = 4, kUp = 5, kDown = 6;
};

struct RopeScaling {
  std::string type;  // "" (none), "linear", "llama3"
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct Architecture {
  std::string model_type;  // llama | mistral | qwen2 | qwen3 | qwen3_moe | qwen2_moe | mixtral
  int64_t hidden = 0, intermediate = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int64_t vocab = 0, max_positions = 0;
  double rms_eps = 1e-5, rope_theta = 10000.0;
  bool tie_embeddings = false, qkv_bias = false, qk_norm = false;
  RopePairing pairing = RopePairing::Neox;
  RopeScaling rope_scaling;
  int32_t bos_id = -1, eos_id = -1;

  std::string embed = "model.embed_tokens.weight";
  std::string final_norm = "model.norm.weight";
  std::string lm_head = "lm_head.weight";  // when tie_embeddings, the engine reads `embed` instead
  std::vector<LayerDesc> layers;

  // Throws Error(XQ_ERR_UNSUPPORTED) for other model types and
  // Error(XQ_ERR_MALFORMED) naming the key for inconsistent shapes.
  static Architecture from_config(const Kv& config);

  // RoPE frequency divisors for llama3 scaling ([head_dim/2], llama.cpp's
  // rope_freqs convention: the angle is divided by them); empty otherwise.
  std::vector<float> llama3_freq_factors() const;
  // XQ_OP_ROPE f[1]: positions are multiplied by it (1/factor for "linear").
  double rope_position_scale() const;

  // Every Linear in the model, in execution order (pipeline convenience).
  std::vector<const LinearDesc*> all_linears() const;
};

}  // namespace xquant
