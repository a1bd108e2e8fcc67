// model_meta.cpp: see model_meta.hpp.
#include "model_meta.hpp"

#include <cmath>
#include <cstring>

namespace xquant::gguf {

using sdk::Error;

std::string gguf_architecture(const std::string& a) {
  // convert_hf_to_gguf.py writes Mistral and Mixtral (LlamaModel, with
  // llama.expert_count) as llama.
  if (a == "llama" || a == "mistral" || a == "mixtral") return "llama";
  if (a == "qwen2" || a == "qwen3") return a;
  if (a == "qwen2_moe") return "qwen2moe";
  if (a == "qwen3_moe") return "qwen3moe";
  throw Error(XQ_ERR_UNSUPPORTED, "gguf writer: architecture '" + a +
                                      "' has no GGUF mapping here (llama, mistral, mixtral, qwen2, qwen3, qwen2_moe, "
                                      "qwen3_moe)");
}

namespace {

int64_t need_int(const sdk::KvReader& c, const char* key) {
  if (!c.has(key))
    throw Error(XQ_ERR_INVALID_ARGUMENT, std::string("gguf writer: the model config has no '") + key +
                                             "', which llama.cpp needs");
  return c.get_int(key);
}

// The MoE hyper-parameters llama.cpp reads (llama-model.cpp load_hparams:
// expert_count, expert_used_count; models/qwen2moe.cpp and qwen3moe.cpp:
// expert_feed_forward_length, qwen2moe's expert_shared_feed_forward_length).
// llama.cpp's qwen2moe, qwen3moe and llama graphs treat every layer as MoE
// and fix whether the top-k weights are renormalised (qwen2moe: no; qwen3moe
// and llama: yes); `expert_weights_norm` records the model's own choice for
// readers that honour it (our loader; llama.cpp reads it for other MoE
// architectures, e.g. models/deepseek2.cpp, and llama-model-saver.cpp writes it).
void write_moe_hparams(Emitter& out, const std::string& A, const sdk::KvReader& c, int64_t experts) {
  if (c.get_int("decoder_sparse_step", 1) > 1 || !c.get_string("mlp_only_layers", "").empty())
    throw Error(XQ_ERR_UNSUPPORTED, "gguf writer: the model mixes dense and MoE layers (decoder_sparse_step, "
                                    "mlp_only_layers), which llama.cpp's " + A + " graph has no form for");
  out.set(A + ".expert_count", u32_value(experts));
  out.set(A + ".expert_used_count", u32_value(need_int(c, "num_experts_per_tok")));
  if (A == "qwen2moe" || A == "qwen3moe")
    out.set(A + ".expert_feed_forward_length", u32_value(need_int(c, "moe_intermediate_size")));
  if (A == "qwen2moe" && c.get_int("shared_expert_intermediate_size", 0) > 0)
    out.set(A + ".expert_shared_feed_forward_length", u32_value(c.get_int("shared_expert_intermediate_size")));
  if (c.has("norm_topk_prob")) out.set(A + ".expert_weights_norm", bool_value(c.get_bool("norm_topk_prob")));
}

}  // namespace

int64_t expert_count(const sdk::KvReader& c) {
  return c.get_int("num_experts", c.get_int("num_local_experts", 0));
}

bool llama_cpp_renormalises_top_k(const std::string& arch) { return arch != "qwen2moe"; }

void write_hparams(Emitter& out, const std::string& A, const sdk::KvReader& c) {
  out.set("general.architecture", str_value(A));
  out.set("general.quantized_by", str_value("xquant"));
  const int64_t hidden = need_int(c, "hidden_size"), heads = need_int(c, "num_attention_heads");
  out.set(A + ".context_length", u32_value(c.get_int("max_position_embeddings", 2048)));
  out.set(A + ".embedding_length", u32_value(hidden));
  out.set(A + ".block_count", u32_value(need_int(c, "num_hidden_layers")));
  out.set(A + ".feed_forward_length", u32_value(need_int(c, "intermediate_size")));
  out.set(A + ".attention.head_count", u32_value(heads));
  out.set(A + ".attention.head_count_kv", u32_value(c.get_int("num_key_value_heads", heads)));
  out.set(A + ".rope.freq_base", f32_value(c.get_float("rope_theta", 10000.0)));
  out.set(A + ".attention.layer_norm_rms_epsilon", f32_value(c.get_float("rms_norm_eps", 1e-6)));
  const int64_t head_dim = c.get_int("head_dim", hidden / heads);
  // convert_hf_to_gguf.py writes key/value length only where head_dim is not
  // hidden / heads (Qwen3, some Mistrals); the rope dimension always.
  if (head_dim != hidden / heads) {
    out.set(A + ".attention.key_length", u32_value(head_dim));
    out.set(A + ".attention.value_length", u32_value(head_dim));
  }
  out.set(A + ".rope.dimension_count", u32_value(head_dim));
  if (c.has("vocab_size")) out.set(A + ".vocab_size", u32_value(c.get_int("vocab_size")));
  if (const int64_t experts = expert_count(c); experts > 0) write_moe_hparams(out, A, c, experts);
  const std::string scaling = c.get_string("rope_scaling.type", "");
  if ((scaling == "linear" || scaling == "yarn") && c.has("rope_scaling.factor")) {
    out.set(A + ".rope.scaling.type", str_value(scaling));
    out.set(A + ".rope.scaling.factor", f32_value(c.get_float("rope_scaling.factor")));
    if (c.has("rope_scaling.original_max_position_embeddings"))
      out.set(A + ".rope.scaling.original_context_length",
              u32_value(c.get_int("rope_scaling.original_max_position_embeddings")));
  } else if (!scaling.empty() && scaling != "llama3") {
    throw Error(XQ_ERR_UNSUPPORTED, "gguf writer: rope_scaling type '" + scaling +
                                        "' has no GGUF form here (linear, yarn, llama3)");
  }
}

std::vector<float> llama3_rope_factors(const sdk::KvReader& c) {
  if (c.get_string("rope_scaling.type", "") != "llama3") return {};
  // convert_hf_to_gguf.py LlamaModel.generate_extra_tensors.
  const double base = c.get_float("rope_theta", 10000.0);
  const int64_t dim = c.get_int("head_dim", c.get_int("hidden_size") / c.get_int("num_attention_heads"));
  const double factor = c.get_float("rope_scaling.factor", 8.0);
  const double low = c.get_float("rope_scaling.low_freq_factor", 1.0);
  const double high = c.get_float("rope_scaling.high_freq_factor", 4.0);
  const double old_len = static_cast<double>(c.get_int("rope_scaling.original_max_position_embeddings", 8192));
  const double low_wavelen = old_len / low, high_wavelen = old_len / high;
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const double freq = 1.0 / std::pow(base, static_cast<double>(i) / dim);
    const double wavelen = 2 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) f = 1;
    else if (wavelen > low_wavelen) f = factor;
    else {
      const double smooth = (old_len / wavelen - low) / (high - low);
      f = 1 / ((1 - smooth) / factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

namespace {

struct NameRule {
  const char* hf;
  const char* gguf;
};
constexpr NameRule kLayerNames[] = {
    {"input_layernorm", "attn_norm"},        {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},          {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},     {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},     {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},           {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    // Mixture of experts (gguf-py constants.py MODEL_TENSOR.FFN_GATE_INP,
    // FFN_*_SHEXP, FFN_GATE_INP_SHEXP; Mixtral's router under its HF name).
    {"mlp.gate", "ffn_gate_inp"},            {"block_sparse_moe.gate", "ffn_gate_inp"},
    {"mlp.shared_expert.gate_proj", "ffn_gate_shexp"}, {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
    {"mlp.shared_expert.down_proj", "ffn_down_shexp"}, {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
};
// Routed experts: <prefix>E.<proj> -> the stacked ffn_*_exps tensor.
struct ExpertRule {
  const char* prefix;
  const char* proj;
  const char* gguf;
};
constexpr ExpertRule kExpertNames[] = {
    {"mlp.experts.", "gate_proj", "ffn_gate_exps"},       {"mlp.experts.", "up_proj", "ffn_up_exps"},
    {"mlp.experts.", "down_proj", "ffn_down_exps"},       {"block_sparse_moe.experts.", "w1", "ffn_gate_exps"},
    {"block_sparse_moe.experts.", "w3", "ffn_up_exps"},   {"block_sparse_moe.experts.", "w2", "ffn_down_exps"},
};

// "E.proj" after `prefix` in `rest`: the expert index, or -1.
int64_t expert_of(const std::string& rest, const ExpertRule& r) {
  const std::string prefix = r.prefix, tail = std::string(".") + r.proj;
  if (rest.size() <= prefix.size() + tail.size() || rest.rfind(prefix, 0) != 0 ||
      rest.compare(rest.size() - tail.size(), tail.size(), tail) != 0)
    return -1;
  const std::string digits = rest.substr(prefix.size(), rest.size() - prefix.size() - tail.size());
  if (digits.empty() || digits.size() > 9) return -1;
  for (char ch : digits)
    if (ch < '0' || ch > '9') return -1;
  return std::stoll(digits);
}
constexpr NameRule kGlobalNames[] = {
    {"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"},
    {"lm_head", "output"},                {"rope_freqs", "rope_freqs"},
};

}  // namespace

std::optional<GgufName> gguf_tensor_name(const std::string& hf) {
  std::string stem, suffix;
  for (const char* s : {".weight", ".bias"}) {
    const size_t n = std::strlen(s);
    if (hf.size() > n && hf.compare(hf.size() - n, n, s) == 0) {
      stem = hf.substr(0, hf.size() - n);
      suffix = s;
    }
  }
  if (suffix.empty()) return std::nullopt;
  for (const auto& r : kGlobalNames)
    if (stem == r.hf) return GgufName{std::string(r.gguf) + suffix, r.gguf};
  const std::string prefix = "model.layers.";
  if (stem.rfind(prefix, 0) != 0) return std::nullopt;
  const size_t dot = stem.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return std::nullopt;
  const std::string layer = stem.substr(prefix.size(), dot - prefix.size());
  for (char ch : layer)
    if (ch < '0' || ch > '9') return std::nullopt;
  const std::string rest = stem.substr(dot + 1);
  for (const auto& r : kLayerNames)
    if (rest == r.hf) return GgufName{"blk." + layer + "." + r.gguf + suffix, r.gguf};
  for (const auto& r : kExpertNames)
    if (const int64_t e = expert_of(rest, r); e >= 0 && suffix == ".weight")
      return GgufName{"blk." + layer + "." + r.gguf + suffix, r.gguf, e};
  return std::nullopt;
}

int64_t permuted_heads(const std::string& arch, const std::string& base, const sdk::KvReader& c) {
  if (arch != "llama") return 0;
  const int64_t heads = c.get_int("num_attention_heads", 0);
  if (base == "attn_q") return heads;
  if (base == "attn_k") return c.get_int("num_key_value_heads", heads);
  return 0;
}

int64_t gguf_row(int64_t r, int64_t rows, int64_t heads) {
  const int64_t hd = rows / heads, h = r / hd, i = r % hd, half = hd / 2;
  return h * hd + (i < half ? 2 * i : 2 * (i - half) + 1);
}

}  // namespace xquant::gguf
