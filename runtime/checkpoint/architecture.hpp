// architecture.hpp: what a decoder-only Llama-family model is made of, read
// from the canonical configuration (xq_kv filled by a loader).
//
// One description shared by the inference engine (which ops to run on which
// tensors), the calibration capture (which Linears share an input) and the
// quantization pipeline (layer groups handed to algorithms). Supported
// model_types: llama, mistral, qwen2 (q/k/v biases), qwen3 (q/k RMS norms).
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
};

struct LayerDesc {
  int index = 0;
  std::string input_norm, post_norm;  // tensor names
  std::string q_norm, k_norm;         // qwen3 only, else ""
  std::vector<LinearDesc> linears;    // q, k, v, o, gate, up, down (this order)
  std::vector<LinearGroupDesc> groups;  // attn_in {q,k,v}, attn_out {o}, mlp_in {gate,up}, mlp_out {down}

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
  std::string model_type;  // llama | mistral | qwen2 | qwen3
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
