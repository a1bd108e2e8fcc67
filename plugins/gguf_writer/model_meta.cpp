// model_meta.cpp: see model_meta.hpp.
#include "model_meta.hpp"

#include <cmath>
#include <cstring>

namespace xquant::gguf {

using sdk::Error;

std::string gguf_architecture(const std::string& a) {
  if (a == "llama" || a == "mistral") return "llama";  // convert_hf_to_gguf.py writes Mistral as llama
  if (a == "qwen2" || a == "qwen3") return a;
  throw Error(XQ_ERR_UNSUPPORTED, "gguf writer: architecture '" + a +
                                      "' has no GGUF mapping here (llama, mistral, qwen2, qwen3)");
}

namespace {

int64_t need_int(const sdk::KvReader& c, const char* key) {
  if (!c.has(key))
    throw Error(XQ_ERR_INVALID_ARGUMENT, std::string("gguf writer: the model config has no '") + key +
                                             "', which llama.cpp needs");
  return c.get_int(key);
}

}  // namespace

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
};
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
