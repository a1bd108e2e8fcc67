// moe_checkpoint.hpp: tiny random Mixture-of-Experts checkpoints (HF
// config.json + F32 safetensors with per-expert tensor names, as hub
// checkpoints store them) for the engine and calibration tests.
#pragma once

#include "process_temp_dir.hpp"
#include "safetensors_file.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace xquant::test {

struct Cfg {
  std::string type;  // qwen3_moe | qwen2_moe | mixtral
  int64_t hidden = 32, inter = 40, moe_inter = 24, shared = 0, experts = 8, top_k = 2, layers = 1, heads = 4, kv = 2,
          hd = 8, vocab = 40;
  bool norm_topk = false;
};

using Tensors = F32Tensors;

inline std::string block(const Cfg& c, int64_t l) {
  return "model.layers." + std::to_string(l) + (c.type == "mixtral" ? ".block_sparse_moe." : ".mlp.");
}
inline std::string expert_name(const Cfg& c, int64_t l, int64_t e, int which) {  // 0 gate, 1 up, 2 down
  static const char* qwen[] = {"gate_proj", "up_proj", "down_proj"};
  static const char* mixtral[] = {"w1", "w3", "w2"};
  return block(c, l) + "experts." + std::to_string(e) + "." + (c.type == "mixtral" ? mixtral : qwen)[which] + ".weight";
}

inline Tensors make_weights(const Cfg& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f), n(0.7f, 1.3f);
  Tensors t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    int64_t k = 1;
    for (auto s : shape) k *= s;
    std::vector<float> v(static_cast<size_t>(k));
    for (auto& x : v) x = norm ? n(rng) : u(rng);
    t[name] = {shape, v};
  };
  add("model.embed_tokens.weight", {c.vocab, c.hidden});
  for (int64_t l = 0; l < c.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {c.hidden}, true);
    add(p + "post_attention_layernorm.weight", {c.hidden}, true);
    add(p + "self_attn.q_proj.weight", {c.heads * c.hd, c.hidden});
    add(p + "self_attn.k_proj.weight", {c.kv * c.hd, c.hidden});
    add(p + "self_attn.v_proj.weight", {c.kv * c.hd, c.hidden});
    add(p + "self_attn.o_proj.weight", {c.hidden, c.heads * c.hd});
    if (c.type == "qwen2_moe") {
      add(p + "self_attn.q_proj.bias", {c.heads * c.hd});
      add(p + "self_attn.k_proj.bias", {c.kv * c.hd});
      add(p + "self_attn.v_proj.bias", {c.kv * c.hd});
    }
    if (c.type == "qwen3_moe") {
      add(p + "self_attn.q_norm.weight", {c.hd}, true);
      add(p + "self_attn.k_norm.weight", {c.hd}, true);
    }
    const int64_t I = c.type == "mixtral" ? c.inter : c.moe_inter;
    add(block(c, l) + "gate.weight", {c.experts, c.hidden});
    for (int64_t e = 0; e < c.experts; ++e) {
      add(expert_name(c, l, e, 0), {I, c.hidden});
      add(expert_name(c, l, e, 1), {I, c.hidden});
      add(expert_name(c, l, e, 2), {c.hidden, I});
    }
    if (c.shared) {
      add(block(c, l) + "shared_expert.gate_proj.weight", {c.shared, c.hidden});
      add(block(c, l) + "shared_expert.up_proj.weight", {c.shared, c.hidden});
      add(block(c, l) + "shared_expert.down_proj.weight", {c.hidden, c.shared});
      add(block(c, l) + "shared_expert_gate.weight", {1, c.hidden});
    }
  }
  add("model.norm.weight", {c.hidden}, true);
  add("lm_head.weight", {c.vocab, c.hidden});
  return t;
}

inline std::filesystem::path write_checkpoint(const Cfg& c, const Tensors& t, const std::string& name = "") {
  namespace fs = std::filesystem;
  fs::path dir = process_temp_dir("xquant_moe_test") / (name.empty() ? c.type : name);
  fs::create_directories(dir);
  nlohmann::json cfg{{"model_type", c.type},
                     {"hidden_size", c.hidden},
                     {"intermediate_size", c.inter},
                     {"num_hidden_layers", c.layers},
                     {"num_attention_heads", c.heads},
                     {"num_key_value_heads", c.kv},
                     {"head_dim", c.hd},
                     {"vocab_size", c.vocab},
                     {"rms_norm_eps", 1e-6},
                     {"num_experts_per_tok", c.top_k},
                     {"norm_topk_prob", c.norm_topk},
                     {"tie_word_embeddings", false}};
  cfg[c.type == "mixtral" ? "num_local_experts" : "num_experts"] = c.experts;
  if (c.type != "mixtral") cfg["moe_intermediate_size"] = c.moe_inter;
  if (c.type == "qwen2_moe") cfg["shared_expert_intermediate_size"] = c.shared;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  write_f32_safetensors(dir / "model.safetensors", t);
  return dir;
}

}  // namespace xquant::test
