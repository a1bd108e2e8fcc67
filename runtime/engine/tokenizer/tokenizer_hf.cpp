// tokenizer_hf.cpp: builds a byte-level BPE tokenizer from a Hugging Face
// tokenizer.json (config key "tokenizer.huggingface_json"): model.vocab,
// model.merges ("a b" strings or [a, b] pairs), added_tokens (special ->
// control, others -> user-defined) and the pre_tokenizer's Split regexes
// (plus the GPT-2 regex for ByteLevel{use_regex: true} and \p{N} for
// Digits{individual_digits}), applied in order like llama.cpp's lists.
#include "core/error.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <nlohmann/json.hpp>

namespace xquant::tok {

namespace {

void collect_regexes(const nlohmann::json& pt, std::vector<std::string>* out) {
  if (!pt.is_object()) return;
  const std::string type = pt.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : pt.value("pretokenizers", nlohmann::json::array())) collect_regexes(p, out);
  } else if (type == "Split") {
    const auto& pat = pt["pattern"];
    if (pat.contains("Regex")) out->push_back(pat["Regex"].get<std::string>());
    else if (pat.contains("String")) {
      // A literal: escape it for PCRE2.
      std::string s = "\\Q" + pat["String"].get<std::string>() + "\\E";
      out->push_back(s);
    }
  } else if (type == "ByteLevel") {
    if (pt.value("use_regex", true))
      out->push_back("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)");
  } else if (type == "Digits") {
    out->push_back(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> from_hf_json(const std::string& text, const Kv& config) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json is not valid JSON: {}", e.what());
  }
  const auto& model = j["model"];
  if (!model.is_object() || model.value("type", "BPE") != "BPE")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json model type '{}' is not supported (BPE only)",
         model.is_object() ? model.value("type", "?") : std::string("?"));
  if (!model.value("byte_fallback", false) && j.contains("decoder") && j["decoder"].is_object() &&
      j["decoder"].value("type", "") != "ByteLevel" && j["decoder"].value("type", "") != "Sequence")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: only byte-level BPE tokenizer.json files are supported");
  Vocab v;
  const auto& vocab = model["vocab"];
  if (!vocab.is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json has no model.vocab object");
  size_t n = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) n = std::max<size_t>(n, it.value().get<size_t>() + 1);
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) n = std::max<size_t>(n, a["id"].get<size_t>() + 1);
  v.tokens.assign(n, std::string());
  v.types.assign(n, kUnused);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    size_t id = it.value().get<size_t>();
    v.tokens[id] = it.key();
    v.types[id] = kNormal;
  }
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
    size_t id = a["id"].get<size_t>();
    v.tokens[id] = a["content"].get<std::string>();
    v.types[id] = a.value("special", false) ? kControl : kUserDefined;
  }
  std::vector<std::string> merges;
  for (const auto& m : model.value("merges", nlohmann::json::array())) {
    if (m.is_string()) merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2) merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    else fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json merge entries must be strings or pairs");
  }
  std::vector<std::string> regexes;
  if (j.contains("pre_tokenizer")) collect_regexes(j["pre_tokenizer"], &regexes);
  auto id_of = [&](const char* key, int32_t fallback) {
    int64_t x = config.get_int(key, fallback);
    return x >= 0 && static_cast<size_t>(x) < n ? static_cast<int32_t>(x) : -1;
  };
  v.bos = id_of("tokenizer.bos_token_id", config.get_int("bos_token_id", -1));
  v.eos = id_of("tokenizer.eos_token_id", config.get_int("eos_token_id", -1));
  v.add_bos = config.get_bool("tokenizer.add_bos_token", false);
  v.add_space_prefix = false;
  v.finish();
  return make_bpe(std::move(v), std::move(merges), RegexSplitter(regexes), model.value("ignore_merges", false));
}

}  // namespace xquant::tok
