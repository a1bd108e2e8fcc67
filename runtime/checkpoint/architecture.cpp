// architecture.cpp: builds the per-layer description of a Llama-family
// model from its canonical configuration (see architecture.hpp).
#include "checkpoint/architecture.hpp"

#include "core/error.hpp"

#include <cmath>

namespace xquant {

namespace {

int64_t need_int(const Kv& c, const char* key) {
  const KvValue* v = c.find(key);
  if (!v) fail(XQ_ERR_MALFORMED, "model configuration lacks '{}'", key);
  if (v->type() != XQ_VALUE_INT) fail(XQ_ERR_MALFORMED, "model configuration key '{}' must be an integer", key);
  if (v->as_int() <= 0) fail(XQ_ERR_MALFORMED, "model configuration key '{}' must be positive (got {})", key, v->as_int());
  return v->as_int();
}

}  // namespace

Architecture Architecture::from_config(const Kv& c) {
  Architecture a;
  a.model_type = c.get_string("architecture", "");
  if (a.model_type != "llama" && a.model_type != "mistral" && a.model_type != "qwen2" && a.model_type != "qwen3")
    fail(XQ_ERR_UNSUPPORTED, "architecture '{}' is not supported by the engine (llama, mistral, qwen2, qwen3)",
         a.model_type.empty() ? std::string("(missing)") : a.model_type);
  a.hidden = need_int(c, "hidden_size");
  a.intermediate = need_int(c, "intermediate_size");
  a.n_layers = need_int(c, "num_hidden_layers");
  a.n_heads = need_int(c, "num_attention_heads");
  a.n_kv_heads = c.has("num_key_value_heads") ? need_int(c, "num_key_value_heads") : a.n_heads;
  a.head_dim = c.has("head_dim") ? need_int(c, "head_dim") : a.hidden / a.n_heads;
  a.vocab = need_int(c, "vocab_size");
  a.max_positions = c.get_int("max_position_embeddings", 2048);
  if (a.n_heads % a.n_kv_heads != 0)
    fail(XQ_ERR_MALFORMED, "num_attention_heads {} is not a multiple of num_key_value_heads {}", a.n_heads, a.n_kv_heads);
  if (a.head_dim % 2 != 0) fail(XQ_ERR_MALFORMED, "head_dim {} must be even for RoPE", a.head_dim);
  a.rms_eps = c.get_float("rms_norm_eps", 1e-5);
  a.rope_theta = c.get_float("rope_theta", 10000.0);
  a.tie_embeddings = c.get_bool("tie_word_embeddings", false);
  // Qwen2 has q/k/v biases whatever the config says (transformers
  // modeling_qwen2.py Qwen2Attention); others follow attention_bias.
  a.qkv_bias = a.model_type == "qwen2" || c.get_bool("attention_bias", false);
  a.qk_norm = a.model_type == "qwen3";
  a.bos_id = static_cast<int32_t>(c.get_int("bos_token_id", c.get_int("tokenizer.bos_token_id", -1)));
  a.eos_id = static_cast<int32_t>(c.get_int("eos_token_id", c.get_int("tokenizer.eos_token_id", -1)));

  std::string rs = c.get_string("rope_scaling.type", "");
  if (rs == "default" || rs == "none") rs.clear();
  if (!rs.empty()) {
    if (rs != "linear" && rs != "llama3")
      fail(XQ_ERR_UNSUPPORTED, "rope_scaling.type '{}' is not supported (linear, llama3)", rs);
    a.rope_scaling.type = rs;
    a.rope_scaling.factor = c.get_float("rope_scaling.factor", 1.0);
    a.rope_scaling.low_freq_factor = c.get_float("rope_scaling.low_freq_factor", 1.0);
    a.rope_scaling.high_freq_factor = c.get_float("rope_scaling.high_freq_factor", 4.0);
    a.rope_scaling.original_max_position = c.get_int("rope_scaling.original_max_position_embeddings", 8192);
    if (!(a.rope_scaling.factor > 0)) fail(XQ_ERR_MALFORMED, "rope_scaling.factor must be > 0");
  }

  const int64_t H = a.hidden, I = a.intermediate, QD = a.n_heads * a.head_dim, KD = a.n_kv_heads * a.head_dim;
  for (int64_t l = 0; l < a.n_layers; ++l) {
    LayerDesc L;
    L.index = static_cast<int>(l);
    std::string p = "model.layers." + std::to_string(l) + ".";
    L.input_norm = p + "input_layernorm.weight";
    L.post_norm = p + "post_attention_layernorm.weight";
    if (a.qk_norm) {
      L.q_norm = p + "self_attn.q_norm.weight";
      L.k_norm = p + "self_attn.k_norm.weight";
    }
    L.linears = {
        {p + "self_attn.q_proj", "q", QD, H, a.qkv_bias},   {p + "self_attn.k_proj", "k", KD, H, a.qkv_bias},
        {p + "self_attn.v_proj", "v", KD, H, a.qkv_bias},   {p + "self_attn.o_proj", "o", H, QD, false},
        {p + "mlp.gate_proj", "gate", I, H, false},         {p + "mlp.up_proj", "up", I, H, false},
        {p + "mlp.down_proj", "down", H, I, false},
    };
    L.groups = {
        {p + "attn_in", L.input_norm, {LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV}},
        {p + "attn_out", "", {LayerDesc::kO}},
        {p + "mlp_in", L.post_norm, {LayerDesc::kGate, LayerDesc::kUp}},
        {p + "mlp_out", "", {LayerDesc::kDown}},
    };
    a.layers.push_back(std::move(L));
  }
  return a;
}

std::vector<float> Architecture::llama3_freq_factors() const {
  if (rope_scaling.type != "llama3") return {};
  // As llama.cpp's convert_hf_to_gguf.py writes rope_freqs for llama3 (and
  // transformers' modeling_rope_utils.py _compute_llama3_parameters): factor
  // 1 for short wavelengths, `factor` for long ones, and a smooth blend
  // between (the inverse of HF's inv_freq multiplier).
  const double f = rope_scaling.factor, lo = rope_scaling.low_freq_factor, hi = rope_scaling.high_freq_factor;
  const double orig = static_cast<double>(rope_scaling.original_max_position);
  std::vector<float> out(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    double inv = 1.0 / std::pow(rope_theta, 2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    double wavelen = 2.0 * M_PI / inv;
    if (wavelen < orig / hi) {
      out[i] = 1.0f;
    } else if (wavelen > orig / lo) {
      out[i] = static_cast<float>(f);
    } else {
      double s = (orig / wavelen - lo) / (hi - lo);
      out[i] = static_cast<float>(1.0 / ((1.0 - s) / f + s));
    }
  }
  return out;
}

double Architecture::rope_position_scale() const {
  return rope_scaling.type == "linear" ? 1.0 / rope_scaling.factor : 1.0;
}

std::vector<const LinearDesc*> Architecture::all_linears() const {
  std::vector<const LinearDesc*> out;
  for (const auto& l : layers)
    for (const auto& lin : l.linears) out.push_back(&lin);
  return out;
}

}  // namespace xquant
