// hf_test_checkpoint.hpp: tiny random Hugging Face checkpoints of the dense
// decoder types (config.json + one F32 safetensors file in a temp folder,
// read back through the real safetensors loader): Llama/Mistral/Qwen2/Qwen3
// options the engine must honour (q/k/v bias, Qwen3's q/k norms, head_dim
// != hidden / heads, an untied lm_head, llama3 and linear RoPE scaling).
// Used by tests/engine/test_architectures.cpp (against a double reference)
// and test_paged_rope_kv.cpp (the device decode ops against the previous ones).
#pragma once

#include "process_temp_dir.hpp"
#include "safetensors_file.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace xqtest_hf {

namespace fs = std::filesystem;

struct Cfg {
  std::string type;
  int64_t hidden = 32, inter = 48, layers = 2, heads = 4, kv = 2, hd = 8, vocab = 40;
  bool tied = false, bias = false, qk_norm = false;
  std::string rope;  // "", "llama3", "linear"
  double theta = 10000.0, eps = 1e-6;
};

using Tensors = xquant::test::F32Tensors;

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
    if (c.bias) {
      add(p + "self_attn.q_proj.bias", {c.heads * c.hd});
      add(p + "self_attn.k_proj.bias", {c.kv * c.hd});
      add(p + "self_attn.v_proj.bias", {c.kv * c.hd});
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.hd}, true);
      add(p + "self_attn.k_norm.weight", {c.hd}, true);
    }
    add(p + "mlp.gate_proj.weight", {c.inter, c.hidden});
    add(p + "mlp.up_proj.weight", {c.inter, c.hidden});
    add(p + "mlp.down_proj.weight", {c.hidden, c.inter});
  }
  add("model.norm.weight", {c.hidden}, true);
  if (!c.tied) add("lm_head.weight", {c.vocab, c.hidden});
  return t;
}

inline fs::path write_checkpoint(const Cfg& c, const Tensors& t) {
  fs::path dir = xquant::test::process_temp_dir("xquant_arch_test") / c.type;
  fs::create_directories(dir);
  nlohmann::json cfg{{"architectures", {"X"}},
                     {"model_type", c.type},
                     {"hidden_size", c.hidden},
                     {"intermediate_size", c.inter},
                     {"num_hidden_layers", c.layers},
                     {"num_attention_heads", c.heads},
                     {"num_key_value_heads", c.kv},
                     {"head_dim", c.hd},
                     {"vocab_size", c.vocab},
                     {"max_position_embeddings", 4096},
                     {"rms_norm_eps", c.eps},
                     {"rope_theta", c.theta},
                     {"tie_word_embeddings", c.tied},
                     {"torch_dtype", "float32"}};
  if (c.rope == "llama3")
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  if (c.rope == "linear") cfg["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  std::ofstream(dir / "config.json") << cfg.dump(2);
  xquant::test::write_f32_safetensors(dir / "model.safetensors", t);
  return dir;
}

}  // namespace xqtest_hf
