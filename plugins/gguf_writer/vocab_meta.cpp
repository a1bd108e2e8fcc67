// vocab_meta.cpp: see vocab_meta.hpp.
#include "vocab_meta.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <vector>

namespace xquant::gguf {

using sdk::Error;

bool copy_gguf_tokenizer(Emitter& out, const std::string& path) {
  File src(path);
  bool any = false;
  for (const auto& [key, v] : src.kv())
    if (key.rfind("tokenizer.", 0) == 0) {
      out.set(key, v);
      any = true;
    }
  return any;
}

namespace {

// llama.cpp token types (llama-vocab.h LLAMA_TOKEN_TYPE_*).
constexpr int64_t kNormal = 1, kControl = 3, kUserDefined = 4;

// The pre-tokenizer name for the split regex of `pre` (the tokenizer.json
// pre_tokenizer object); the names are the ones llama.cpp's
// llm_tokenizer_bpe recognises.
std::string pre_tokenizer_name(const nlohmann::json& pre, const std::string& where) {
  std::vector<std::string> regexes;
  bool byte_level = false, digits = false;
  std::vector<const nlohmann::json*> parts;
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
    for (const auto& p : pre["pretokenizers"]) parts.push_back(&p);
  else if (pre.is_object())
    parts.push_back(&pre);
  for (const auto* p : parts) {
    const std::string type = p->value("type", "");
    if (type == "ByteLevel") byte_level = true;
    if (type == "Digits") digits = true;
    if (type == "Split" && p->contains("pattern") && (*p)["pattern"].contains("Regex"))
      regexes.push_back((*p)["pattern"]["Regex"].get<std::string>());
  }
  if (!byte_level)
    throw Error(XQ_ERR_UNSUPPORTED, where + ": only byte-level BPE tokenizers convert to GGUF here "
                                            "(the pre_tokenizer has no ByteLevel step)");
  if (regexes.empty()) return digits ? "smollm" : "gpt-2";
  const std::string& r = regexes[0];
  if (r.find("\\p{N}{1,3}") != std::string::npos) return "llama-bpe";
  if (r.find("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|") != std::string::npos) return "qwen2";
  if (r.find("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+") != std::string::npos) return "gpt-2";
  throw Error(XQ_ERR_UNSUPPORTED, where + ": the pre-tokenizer regex '" + r +
                                      "' is not one whose llama.cpp name is known (gpt-2, llama-bpe, qwen2, smollm)");
}

}  // namespace

void write_hf_tokenizer(Emitter& out, const std::string& text, const std::string& where, int64_t bos, int64_t eos,
                        const std::string& tokenizer_config_json) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(XQ_ERR_MALFORMED, where + ": not valid JSON: " + e.what());
  }
  const auto& model = j.contains("model") ? j["model"] : nlohmann::json();
  if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") || !model["vocab"].is_object())
    throw Error(XQ_ERR_UNSUPPORTED, where + ": only BPE tokenizers (model.type \"BPE\" with a vocab) convert to GGUF");
  std::map<int64_t, std::string> by_id;
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      throw Error(XQ_ERR_MALFORMED, where + ": model.vocab['" + it.key() + "'] is not a token id");
    by_id[it.value().get<int64_t>()] = it.key();
  }
  std::map<int64_t, int64_t> types;
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto& t : j["added_tokens"]) {
      if (!t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") || !t["content"].is_string())
        throw Error(XQ_ERR_MALFORMED, where + ": an added_tokens entry lacks an integer id or a string content");
      const int64_t id = t["id"].get<int64_t>();
      by_id[id] = t["content"].get<std::string>();
      types[id] = t.value("special", false) ? kControl : kUserDefined;
    }
  if (by_id.empty() || by_id.rbegin()->first >= static_cast<int64_t>(by_id.size()) * 4 + 1024)
    throw Error(XQ_ERR_MALFORMED, where + ": the token ids are not a dense range");
  const int64_t n = by_id.rbegin()->first + 1;
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int64_t> type(static_cast<size_t>(n), kNormal);
  for (int64_t id = 0; id < n; ++id) {
    auto it = by_id.find(id);
    // convert_hf_to_gguf.py fills holes with [PAD<id>] user-defined tokens.
    tokens[id] = it != by_id.end() ? it->second : "[PAD" + std::to_string(id) + "]";
    if (it == by_id.end()) type[id] = kUserDefined;
    if (types.count(id)) type[id] = types[id];
  }
  std::vector<std::string> merges;
  if (model.contains("merges") && model["merges"].is_array())
    for (const auto& m : model["merges"]) {
      if (m.is_string()) merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
        merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      else throw Error(XQ_ERR_MALFORMED, where + ": model.merges holds an entry that is neither \"a b\" nor [a, b]");
    }
  out.set("tokenizer.ggml.model", str_value("gpt2"));
  out.set("tokenizer.ggml.pre", str_value(pre_tokenizer_name(j.value("pre_tokenizer", nlohmann::json()), where)));
  out.set("tokenizer.ggml.tokens", strings_value(tokens));
  out.set("tokenizer.ggml.token_type", i32s_value(type));
  out.set("tokenizer.ggml.merges", strings_value(merges));
  if (bos >= 0 && bos < n) out.set("tokenizer.ggml.bos_token_id", u32_value(bos));
  if (eos >= 0 && eos < n) out.set("tokenizer.ggml.eos_token_id", u32_value(eos));
  // A TemplateProcessing post-processor that starts with the BOS token is
  // how HF says "prepend BOS" (convert_hf_to_gguf.py reads add_bos_token
  // from tokenizer_config.json; the post-processor is the same fact).
  bool add_bos = false;
  if (j.contains("post_processor") && j["post_processor"].is_object()) {
    const auto& pp = j["post_processor"];
    if (pp.value("type", "") == "TemplateProcessing" && pp.contains("single") && pp["single"].is_array() &&
        !pp["single"].empty() && pp["single"][0].contains("SpecialToken"))
      add_bos = true;
  }
  nlohmann::json tc;
  if (!tokenizer_config_json.empty()) {
    try {
      tc = nlohmann::json::parse(tokenizer_config_json);
    } catch (const nlohmann::json::exception& e) {
      throw Error(XQ_ERR_MALFORMED, where + ": the tokenizer_config.json beside it is not valid JSON: " + e.what());
    }
  }
  if (tc.is_object() && tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean())
    add_bos = tc["add_bos_token"].get<bool>();
  out.set("tokenizer.ggml.add_bos_token", bool_value(add_bos));
  if (tc.is_object() && tc.contains("add_eos_token") && tc["add_eos_token"].is_boolean())
    out.set("tokenizer.ggml.add_eos_token", bool_value(tc["add_eos_token"].get<bool>()));
  if (tc.is_object() && tc.contains("chat_template") && tc["chat_template"].is_string())
    out.set("tokenizer.chat_template", str_value(tc["chat_template"].get<std::string>()));
}

}  // namespace xquant::gguf
