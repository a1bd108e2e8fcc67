// hf_config.cpp: see hf_config.hpp.
#include "hf_config.hpp"

#include <optional>

namespace xquant::st {
namespace {

std::optional<int64_t> as_int(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::optional<double> as_float(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// eos_token_id / bos_token_id: an int or a list of ints (the first counts).
std::optional<int64_t> token_id(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int64_t>();
  return std::nullopt;
}

}  // namespace

void fill_hf_config(const nlohmann::json& cfg, const std::string& file, const sdk::KvWriter& kv) {
  if (!cfg.is_object()) throw sdk::Error(XQ_ERR_MALFORMED, file + ": config.json is not a JSON object");
  std::string model_type;
  if (auto it = cfg.find("model_type"); it != cfg.end() && it->is_string()) {
    model_type = it->get<std::string>();
    kv.set_string("architecture", model_type);
  }
  static constexpr const char* kIntKeys[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                             "num_attention_heads", "vocab_size", "max_position_embeddings"};
  for (const char* k : kIntKeys)
    if (auto v = as_int(cfg, k)) kv.set_int(k, *v);

  // Mixture of experts (configuration_qwen3_moe.py, _qwen2_moe.py, _mixtral.py).
  static constexpr const char* kMoeIntKeys[] = {"num_experts", "num_local_experts", "num_experts_per_tok",
                                                "moe_intermediate_size", "shared_expert_intermediate_size",
                                                "decoder_sparse_step"};
  for (const char* k : kMoeIntKeys)
    if (auto v = as_int(cfg, k)) kv.set_int(k, *v);
  for (const char* k : {"norm_topk_prob", "qkv_bias"})
    if (auto it = cfg.find(k); it != cfg.end() && it->is_boolean()) kv.set_bool(k, it->get<bool>());
  if (auto it = cfg.find("mlp_only_layers"); it != cfg.end() && it->is_array()) {
    std::string list;  // "0,3": the Kv has no list type
    for (const auto& e : *it)
      if (e.is_number_integer()) list += (list.empty() ? "" : ",") + std::to_string(e.get<int64_t>());
    kv.set_string("mlp_only_layers", list);
  }

  auto heads = as_int(cfg, "num_attention_heads");
  if (auto v = as_int(cfg, "num_key_value_heads")) kv.set_int("num_key_value_heads", *v);
  else if (heads) kv.set_int("num_key_value_heads", *heads);  // HF default: MHA
  if (auto v = as_int(cfg, "head_dim")) kv.set_int("head_dim", *v);
  else if (auto hidden = as_int(cfg, "hidden_size"); hidden && heads && *heads > 0)
    kv.set_int("head_dim", *hidden / *heads);

  if (auto v = as_float(cfg, "rms_norm_eps")) kv.set_float("rms_norm_eps", *v);

  // RoPE: transformers v5 nests theta and scaling in rope_parameters.
  const nlohmann::json* rope_params = nullptr;
  if (auto it = cfg.find("rope_parameters"); it != cfg.end() && it->is_object()) rope_params = &*it;
  if (auto v = as_float(cfg, "rope_theta")) kv.set_float("rope_theta", *v);
  else if (rope_params && as_float(*rope_params, "rope_theta"))
    kv.set_float("rope_theta", *as_float(*rope_params, "rope_theta"));

  const nlohmann::json* scaling = nullptr;
  if (auto it = cfg.find("rope_scaling"); it != cfg.end() && it->is_object()) scaling = &*it;
  else scaling = rope_params;
  if (scaling) {
    std::string type;
    for (const char* k : {"rope_type", "type"})
      if (auto it = scaling->find(k); it != scaling->end() && it->is_string()) {
        type = it->get<std::string>();
        break;
      }
    if (!type.empty() && type != "default") {
      kv.set_string("rope_scaling.type", type);
      for (const char* k : {"factor", "low_freq_factor", "high_freq_factor"})
        if (auto v = as_float(*scaling, k)) kv.set_float((std::string("rope_scaling.") + k).c_str(), *v);
      if (auto v = as_int(*scaling, "original_max_position_embeddings"))
        kv.set_int("rope_scaling.original_max_position_embeddings", *v);
    }
  }

  bool tie = false;  // the Llama/Mistral/Qwen config classes default to untied
  if (auto it = cfg.find("tie_word_embeddings"); it != cfg.end() && it->is_boolean()) tie = it->get<bool>();
  kv.set_bool("tie_word_embeddings", tie);
  // Qwen2 hard-wires q/k/v biases; the others follow attention_bias.
  bool bias = model_type == "qwen2";
  if (auto it = cfg.find("attention_bias"); it != cfg.end() && it->is_boolean()) bias = it->get<bool>();
  kv.set_bool("attention_bias", bias);

  if (auto v = token_id(cfg, "bos_token_id")) kv.set_int("bos_token_id", *v);
  if (auto v = token_id(cfg, "eos_token_id")) kv.set_int("eos_token_id", *v);
  for (const char* k : {"torch_dtype", "dtype"})
    if (auto it = cfg.find(k); it != cfg.end() && it->is_string()) {
      kv.set_string("torch_dtype", it->get<std::string>());
      break;
    }
}

}  // namespace xquant::st
