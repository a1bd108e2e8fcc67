// tokenizer_hf.cpp: builds a byte-level BPE tokenizer from a Hugging Face
// tokenizer.json (config key "tokenizer.huggingface_json"): model.vocab,
// model.merges ("a b" strings or [a, b] pairs), added_tokens (special ->
// control, others -> user-defined) and the pre_tokenizer's Split regexes
// (plus the GPT-2 regex for ByteLevel{use_regex: true} and \p{N} for
// Digits{individual_digits}), applied in order like llama.cpp's lists by
// RegexSplitter. The Split regexes of llama.cpp's families run as written:
// their (?i:...) and possessive quantifiers are PCRE2 syntax.
#include "core/error.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <nlohmann/json.hpp>

namespace xquant::tok {

namespace {

// The GPT-2 regex ByteLevel{use_regex: true} splits with (as llama.cpp's
// "gpt-2" pre-tokenizer).
constexpr const char* kGpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

// Appends the regexes of a pre_tokenizer to `out`, in order. Only what
// splits the way llama.cpp's regex lists do is accepted: Split with the
// "Isolated" behaviour (matches and gaps both kept), ByteLevel without an
// added prefix space, Digits; anything else would tokenize differently, so
// it is refused by name rather than ignored.
void collect_regexes(const nlohmann::json& pt, std::vector<std::string>* out) {
  if (!pt.is_object()) return;  // null: no pre-tokenizer
  const std::string type = pt.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : pt.value("pretokenizers", nlohmann::json::array())) collect_regexes(p, out);
  } else if (type == "Split") {
    const std::string behavior = pt.value("behavior", "Isolated");
    if (behavior != "Isolated" || pt.value("invert", false))
      fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json Split pre-tokenizer with behavior '{}'{} is not supported "
           "(Isolated only)", behavior, pt.value("invert", false) ? " and invert" : "");
    const auto& pat = pt.value("pattern", nlohmann::json::object());
    if (pat.contains("Regex")) out->push_back(pat["Regex"].get<std::string>());
    else if (pat.contains("String")) out->push_back("\\Q" + pat["String"].get<std::string>() + "\\E");  // a literal
    else fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json Split pre-tokenizer has no Regex or String pattern");
  } else if (type == "ByteLevel") {
    if (pt.value("add_prefix_space", false))
      fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json ByteLevel pre-tokenizer with add_prefix_space is not supported");
    if (pt.value("use_regex", true)) out->push_back(kGpt2Regex);
  } else if (type == "Digits") {
    out->push_back(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
  } else {
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json pre-tokenizer '{}' is not supported (Split, ByteLevel, Digits, "
         "Sequence)", type);
  }
}

// Token ids past this are refused rather than allocated for.
constexpr size_t kMaxTokenId = size_t{1} << 24;

size_t token_id(const nlohmann::json& id) {
  // get<size_t>() of a float out of range is undefined behaviour (found by
  // fuzzing: an id of 2e23): only non-negative integers are ids.
  if (!id.is_number_unsigned()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json token id {} is not a non-negative integer", id.dump());
  const size_t v = id.get<size_t>();
  if (v >= kMaxTokenId) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json token id {} is too large", v);
  return v;
}

std::unique_ptr<Tokenizer> bpe_from_json(const nlohmann::json& j, const Kv& config) {
  if (!j.is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json is not a JSON object");
  const auto& model = j.contains("model") ? j["model"] : nlohmann::json();
  if (!model.is_object() || model.value("type", "BPE") != "BPE")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json model type '{}' is not supported (BPE only)",
         model.is_object() ? model.value("type", "?") : std::string("?"));
  if (!model.value("byte_fallback", false) && j.contains("decoder") && j["decoder"].is_object() &&
      j["decoder"].value("type", "") != "ByteLevel" && j["decoder"].value("type", "") != "Sequence")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: only byte-level BPE tokenizer.json files are supported");
  Vocab v;
  const auto& vocab = model.contains("vocab") ? model["vocab"] : nlohmann::json();
  if (!vocab.is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json has no model.vocab object");
  size_t n = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) n = std::max<size_t>(n, token_id(it.value()) + 1);
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) n = std::max<size_t>(n, token_id(a.at("id")) + 1);
  v.tokens.assign(n, std::string());
  v.types.assign(n, kUnused);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    size_t id = it.value().get<size_t>();
    v.tokens[id] = it.key();
    v.types[id] = kNormal;
  }
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
    size_t id = token_id(a.at("id"));
    v.tokens[id] = a.at("content").get<std::string>();
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
  PreTokenizer pre;
  pre.regexes = std::move(regexes);
  pre.ignore_merges = model.value("ignore_merges", false);
  return make_bpe(std::move(v), std::move(merges), pre);
}

}  // namespace

std::unique_ptr<Tokenizer> from_hf_json(const std::string& text, const Kv& config) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json is not valid JSON: {}", e.what());
  }
  try {
    return bpe_from_json(j, config);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type or missing
    fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json has an unexpected structure: {}", e.what());
  }
}

}  // namespace xquant::tok
