// architecture.cpp: builds the per-layer description of a Llama-family
// model from its canonical configuration (see architecture.hpp).
#include "checkpoint/architecture.hpp"

#include "core/error.hpp"

#include <algorithm>
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

bool is_moe_type(const std::string& t) { return t == "qwen3_moe" || t == "qwen2_moe" || t == "mixtral"; }

// HF config defaults of the MoE configuration classes (transformers
// configuration_qwen3_moe.py, configuration_qwen2_moe.py,
// configuration_mixtral.py), for config.json files that omit them.
struct MoeDefaults {
  int64_t experts, top_k;
};
MoeDefaults moe_defaults(const std::string& t) {
  if (t == "qwen3_moe") return {128, 8};
  if (t == "qwen2_moe") return {60, 4};
  return {8, 2};  // mixtral
}

int64_t positive_or(const Kv& c, const char* key, int64_t fallback) {
  return c.has(key) ? need_int(c, key) : fallback;
}

// Layers listed in mlp_only_layers ("0,3": the loader's rendering of the
// JSON list) keep a dense MLP.
std::vector<int64_t> mlp_only_layers(const Kv& c) {
  std::vector<int64_t> out;
  const std::string s = c.get_string("mlp_only_layers", "");
  size_t at = 0;
  while (at < s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(at, end - at);
    if (!item.empty()) {
      try {
        out.push_back(std::stoll(item));
      } catch (const std::exception&) {
        fail(XQ_ERR_MALFORMED, "model configuration key 'mlp_only_layers' holds '{}', not a layer index", item);
      }
    }
    at = end + 1;
  }
  return out;
}

// The MoE block of layer L (prefix p): appends its Linears and groups.
void add_moe_block(const Architecture& a, const MoeDesc& m, const std::string& p, LayerDesc& L) {
  const int64_t H = a.hidden, I = m.expert_intermediate, S = m.shared_intermediate;
  const bool mixtral = a.model_type == "mixtral";
  const std::string block = p + (mixtral ? "block_sparse_moe." : "mlp.");
  L.moe = true;
  L.experts = m;
  MoeDesc& e = L.experts;
  auto add = [&](const std::string& module, const char* role, int64_t out, int64_t in) {
    L.linears.push_back({module, role, out, in, false});
    return static_cast<int>(L.linears.size()) - 1;
  };
  e.router = add(block + "gate", "router", m.n_experts, H);
  for (int64_t x = 0; x < m.n_experts; ++x) {
    const std::string ep = block + "experts." + std::to_string(x) + ".";
    // Mixtral's expert MLP: w1 = gate, w3 = up, w2 = down (modeling_mixtral.py MixtralBlockSparseTop2MLP).
    e.gate.push_back(add(ep + (mixtral ? "w1" : "gate_proj"), "expert_gate", I, H));
    e.up.push_back(add(ep + (mixtral ? "w3" : "up_proj"), "expert_up", I, H));
    e.down.push_back(add(ep + (mixtral ? "w2" : "down_proj"), "expert_down", H, I));
  }
  if (S > 0) {
    e.shared_gate = add(block + "shared_expert.gate_proj", "shared_gate", S, H);
    e.shared_up = add(block + "shared_expert.up_proj", "shared_up", S, H);
    e.shared_down = add(block + "shared_expert.down_proj", "shared_down", H, S);
    e.shared_expert_gate = add(block + "shared_expert_gate", "shared_expert_gate", 1, H);
  }
  LinearGroupDesc in{p + "mlp_in", L.post_norm, {e.router}, -1, 2, false};
  if (S > 0) in.linears.insert(in.linears.end(), {e.shared_gate, e.shared_up, e.shared_expert_gate});
  for (int64_t x = 0; x < m.n_experts; ++x) in.linears.insert(in.linears.end(), {e.gate[x], e.up[x]});
  L.groups.push_back(std::move(in));
  for (int64_t x = 0; x < m.n_experts; ++x) {
    e.expert_out_group.push_back(static_cast<int>(L.groups.size()));
    L.groups.push_back({p + "experts." + std::to_string(x) + ".mlp_out", "", {e.down[x]}, e.up[x], 3, false});
  }
  if (S > 0) {
    e.shared_out_group = static_cast<int>(L.groups.size());
    L.groups.push_back({p + "shared_expert.mlp_out", "", {e.shared_down}, e.shared_up, 3, false});
  }
  for (int64_t x = 0; x < m.n_experts; ++x) {
    e.expert_in_group.push_back(static_cast<int>(L.groups.size()));
    L.groups.push_back({p + "experts." + std::to_string(x) + ".mlp_in", L.post_norm, {e.gate[x], e.up[x]}, -1, 2, true});
  }
}

}  // namespace

int LayerDesc::quant_groups() const {
  int n = 0;
  for (const auto& g : groups) n += g.stats_only ? 0 : 1;
  return n;
}

Architecture Architecture::from_config(const Kv& c) {
  Architecture a;
  a.model_type = c.get_string("architecture", "");
  if (a.model_type != "llama" && a.model_type != "mistral" && a.model_type != "qwen2" && a.model_type != "qwen3" &&
      !is_moe_type(a.model_type))
    fail(XQ_ERR_UNSUPPORTED,
         "architecture '{}' is not supported by the engine (llama, mistral, qwen2, qwen3, qwen3_moe, qwen2_moe, mixtral)",
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
  // Qwen2-MoE follows qkv_bias (default true, configuration_qwen2_moe.py).
  a.qkv_bias = a.model_type == "qwen2" || c.get_bool("attention_bias", false) ||
               (a.model_type == "qwen2_moe" && c.get_bool("qkv_bias", true));
  a.qk_norm = a.model_type == "qwen3" || a.model_type == "qwen3_moe";
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

  MoeDesc moe;
  int64_t sparse_step = 1;
  std::vector<int64_t> dense_layers;
  if (is_moe_type(a.model_type)) {
    const MoeDefaults d = moe_defaults(a.model_type);
    moe.n_experts = positive_or(c, "num_experts", positive_or(c, "num_local_experts", d.experts));
    moe.top_k = positive_or(c, "num_experts_per_tok", d.top_k);
    // Mixtral's experts are intermediate_size wide; the Qwen MoEs have their own width.
    moe.expert_intermediate = a.model_type == "mixtral" ? a.intermediate : need_int(c, "moe_intermediate_size");
    moe.shared_intermediate = a.model_type == "qwen2_moe" ? need_int(c, "shared_expert_intermediate_size") : 0;
    moe.norm_topk_prob = a.model_type == "mixtral" || c.get_bool("norm_topk_prob", false);
    sparse_step = positive_or(c, "decoder_sparse_step", 1);
    dense_layers = mlp_only_layers(c);
    if (moe.top_k > moe.n_experts)
      fail(XQ_ERR_MALFORMED, "num_experts_per_tok {} exceeds the {} experts", moe.top_k, moe.n_experts);
  }
  // transformers Qwen2MoeDecoderLayer: a layer is sparse unless listed in
  // mlp_only_layers, when (l + 1) % decoder_sparse_step == 0.
  auto sparse = [&](int64_t l) {
    return moe.n_experts > 0 && std::find(dense_layers.begin(), dense_layers.end(), l) == dense_layers.end() &&
           (l + 1) % sparse_step == 0;
  };
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
    };
    L.groups = {
        {p + "attn_in", L.input_norm, {LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV}, -1, 0, false},
        {p + "attn_out", "", {LayerDesc::kO}, LayerDesc::kV, 1, false},
    };
    if (sparse(l)) {
      add_moe_block(a, moe, p, L);
    } else {
      L.linears.insert(L.linears.end(), {{p + "mlp.gate_proj", "gate", I, H, false},
                                         {p + "mlp.up_proj", "up", I, H, false},
                                         {p + "mlp.down_proj", "down", H, I, false}});
      L.groups.push_back({p + "mlp_in", L.post_norm, {LayerDesc::kGate, LayerDesc::kUp}, -1, 2, false});
      L.groups.push_back({p + "mlp_out", "", {LayerDesc::kDown}, LayerDesc::kUp, 3, false});
    }
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
