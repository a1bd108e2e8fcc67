// hf_synth.cpp: a Hugging Face config.json from the canonical model keys,
// for sources without one (GGUF). vLLM and transformers pick the model class
// from "architectures", so only the families xquant runs are accepted.
#include "writer.hpp"

namespace xquant::ct {

namespace {

constexpr const char* kModelKeys[] = {
    "architecture", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "tie_word_embeddings", "attention_bias", "rope_scaling.type", "rope_scaling.factor",
    "rope_scaling.low_freq_factor", "rope_scaling.high_freq_factor", "rope_scaling.original_max_position_embeddings",
    "bos_token_id", "eos_token_id", "torch_dtype", "config_json", "tokenizer.huggingface_json"};

}  // namespace

SourceModel read_source_model(const sdk::Host& host, const xq_kv* model_config) {
  SourceModel m;
  sdk::KvReader cfg(host, model_config);
  for (const char* k : kModelKeys) {
    auto v = cfg.get(k);
    if (!v) continue;
    m.types[k] = v->type;
    if (v->type == XQ_VALUE_INT || v->type == XQ_VALUE_BOOL) m.ints[k] = v->i;
    else if (v->type == XQ_VALUE_FLOAT) m.floats[k] = v->f;
    else if (v->type == XQ_VALUE_STRING) m.strings[k] = v->s;
  }
  if (m.strings.count("config_json")) {
    m.config_json = m.strings["config_json"];
    try {
      if (!nlohmann::json::parse(m.config_json).is_object()) throw std::runtime_error("not an object");
    } catch (const std::exception& e) {
      throw sdk::Error(XQ_ERR_MALFORMED, std::string("source config_json is not a JSON object: ") + e.what());
    }
  } else {
    (void)synthesize_hf_config(m, "float16");  // fail before any work when none can be synthesised
  }
  if (m.strings.count("tokenizer.huggingface_json")) m.tokenizer_json = m.strings["tokenizer.huggingface_json"];
  return m;
}

nlohmann::json synthesize_hf_config(const SourceModel& m, const std::string& torch_dtype) {
  auto str = [&](const char* k) -> std::string {
    auto it = m.strings.find(k);
    return it == m.strings.end() ? std::string() : it->second;
  };
  const std::string arch = str("architecture");
  std::string cls;
  if (arch == "llama") cls = "LlamaForCausalLM";
  else if (arch == "mistral") cls = "MistralForCausalLM";
  else if (arch == "qwen2") cls = "Qwen2ForCausalLM";
  else if (arch == "qwen3") cls = "Qwen3ForCausalLM";
  else
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "the source has no config.json and its architecture '" + arch +
                                             "' has no Hugging Face config this writer can synthesise "
                                             "(llama, mistral, qwen2, qwen3)");
  nlohmann::json c;
  c["architectures"] = {cls};
  c["model_type"] = arch;
  for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "bos_token_id",
                        "eos_token_id"}) {
    auto it = m.ints.find(k);
    if (it != m.ints.end()) c[k] = it->second;
  }
  for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"})
    if (!c.contains(k))
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                       std::string("the source has no config.json and lacks the canonical key '") + k + "'");
  for (const char* k : {"rms_norm_eps", "rope_theta"}) {
    if (auto it = m.floats.find(k); it != m.floats.end()) c[k] = it->second;
    else if (auto jt = m.ints.find(k); jt != m.ints.end()) c[k] = static_cast<double>(jt->second);
  }
  for (const char* k : {"tie_word_embeddings", "attention_bias"})
    if (auto it = m.ints.find(k); it != m.ints.end()) c[k] = it->second != 0;
  if (arch == "qwen2") c.erase("attention_bias");  // hard-wired there, not a config key
  if (arch == "qwen2" || arch == "qwen3") c["use_sliding_window"] = false;
  c["hidden_act"] = "silu";
  c["torch_dtype"] = str("torch_dtype").empty() ? torch_dtype : str("torch_dtype");
  if (!str("rope_scaling.type").empty()) {
    nlohmann::json rs;
    rs["rope_type"] = str("rope_scaling.type");
    for (const char* k : {"factor", "low_freq_factor", "high_freq_factor"})
      if (auto it = m.floats.find(std::string("rope_scaling.") + k); it != m.floats.end()) rs[k] = it->second;
    if (auto it = m.ints.find("rope_scaling.original_max_position_embeddings"); it != m.ints.end())
      rs["original_max_position_embeddings"] = it->second;
    c["rope_scaling"] = rs;
  }
  return c;
}

}  // namespace xquant::ct

// The tokenizer files come from <xquant/sdk/hf_tokenizer.hpp>, shared with
// the other HF-layout writers; this plugin only reads the GGUF vocabulary.
#include "gguf_file.hpp"
#include "gguf_vocabulary.hpp"

namespace xquant::ct {

std::map<std::string, std::string> synthesize_hf_tokenizer(const std::string& gguf_path) {
  const sdk::hf_tokenizer::GgufVocabulary v = gguf::read_gguf_vocabulary(gguf_path);
  std::map<std::string, std::string> files;
  try {
    files["tokenizer.json"] = sdk::hf_tokenizer::tokenizer_json(v).dump(2) + "\n";
  } catch (const sdk::Error& e) {
    throw sdk::Error(e.status(), gguf_path + ": " + e.what());
  }
  files["tokenizer_config.json"] = sdk::hf_tokenizer::tokenizer_config(v).dump(2) + "\n";
  files["special_tokens_map.json"] = sdk::hf_tokenizer::special_tokens_map(v).dump(2) + "\n";
  return files;
}

std::map<std::string, std::string> tokenizer_files_for_gguf_source(const sdk::Host& host,
                                                                   const std::filesystem::path& source) {
  std::error_code ec;
  if (source.empty() || !std::filesystem::is_regular_file(source, ec) || !gguf::File::has_magic(source.string()))
    return {};
  try {
    return synthesize_hf_tokenizer(source.string());
  } catch (const sdk::Error& e) {
    host.warn(std::string("no tokenizer.json is written (eval/generate will need --tokenizer): ") + e.what());
    return {};
  }
}

}  // namespace xquant::ct
