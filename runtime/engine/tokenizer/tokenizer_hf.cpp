// tokenizer_hf.cpp: builds a byte-level BPE tokenizer from a Hugging Face
// tokenizer.json (config key "tokenizer.huggingface_json"): model.vocab,
// model.merges ("a b" strings or [a, b] pairs), added_tokens (special ->
// control, others -> user-defined) and the pre_tokenizer's Split regexes
// (plus the GPT-2 regex for ByteLevel{use_regex: true} and \p{N} for
// Digits{individual_digits}), applied in order like llama.cpp's lists by
// RegexSplitter. The Split regexes of llama.cpp's families run as written:
// their (?i:...) and possessive quantifiers are PCRE2 syntax. A
// SentencePiece vocabulary spelled as a byte_fallback BPE model with a
// U+2581 normalizer (Llama's tokenizer.json) runs on the SentencePiece
// tokenizer instead (spm_from_json).
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

// Whether BOS is prepended: the config's tokenizer.add_bos_token, else the
// tokenizer.json's own say, a TemplateProcessing post-processor whose
// single-sequence template starts with the BOS token.
bool adds_bos(const nlohmann::json& j, const Vocab& v, const Kv& config) {
  if (config.find("tokenizer.add_bos_token")) return config.get_bool("tokenizer.add_bos_token", false);
  if (v.bos < 0 || !j.contains("post_processor") || !j["post_processor"].is_object()) return false;
  const auto& pp = j["post_processor"];
  if (pp.value("type", "") != "TemplateProcessing" || !pp.contains("single") || !pp["single"].is_array() ||
      pp["single"].empty() || !pp["single"][0].contains("SpecialToken"))
    return false;
  return pp["single"][0]["SpecialToken"].value("id", "") == v.tokens[static_cast<size_t>(v.bos)];
}

// A SentencePiece vocabulary as tokenizer.json spells it (Llama's files, and
// what the compressed-tensors writer synthesises from a GGUF, see
// sdk/include/xquant/sdk/hf_tokenizer.hpp): a BPE model with byte_fallback
// whose normalizer turns spaces into U+2581, after prepending one when
// add_space_prefix (Sequence[Prepend, Replace] or Replace alone), and no
// pre-tokenizer. Returns false for anything else; sets *prefix.
bool is_spm_style(const nlohmann::json& j, const nlohmann::json& model, bool* prefix) {
  if (!model.value("byte_fallback", false)) return false;
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) return false;
  if (!j.contains("normalizer") || !j["normalizer"].is_object()) return false;
  const auto& n = j["normalizer"];
  std::vector<nlohmann::json> steps;
  if (n.value("type", "") == "Sequence") steps = n.value("normalizers", std::vector<nlohmann::json>());
  else steps.push_back(n);
  *prefix = false;
  bool escapes = false;
  for (const auto& s : steps) {
    const std::string type = s.value("type", "");
    if (type == "Prepend" && s.value("prepend", "") == "\u2581" && !escapes) *prefix = true;
    else if (type == "Replace" && s.contains("pattern") && s["pattern"].value("String", "") == " " &&
             s.value("content", "") == "\u2581")
      escapes = true;
    else
      return false;
  }
  return escapes;
}

// The SentencePiece tokenizer (spm.cpp) over a tokenizer.json BPE model.
// spm.cpp merges the adjacent pair whose concatenation is the best-scored
// token; BPE merges the pair of lowest merge rank. With the merges a
// SentencePiece vocabulary implies (every split of a token, ranked by its
// score) both agree when a token's score is minus the rank of its first
// merge, which is what is set here. Byte tokens <0xXX> are the fallback.
std::unique_ptr<Tokenizer> spm_from_json(const nlohmann::json& j, const nlohmann::json& model, bool prefix,
                                         const Kv& config) {
  Vocab v;
  const auto& vocab = model.contains("vocab") ? model["vocab"] : nlohmann::json();
  if (!vocab.is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json has no model.vocab object");
  size_t n = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) n = std::max<size_t>(n, token_id(it.value()) + 1);
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) n = std::max<size_t>(n, token_id(a.at("id")) + 1);
  v.tokens.assign(n, std::string());
  v.types.assign(n, kUnused);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const size_t id = token_id(it.value());
    v.tokens[id] = it.key();
    v.types[id] = byte_token_value(it.key()).empty() ? kNormal : kByte;
  }
  const std::string unk = model.contains("unk_token") && model["unk_token"].is_string() ? model["unk_token"].get<std::string>() : "";
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
    const size_t id = token_id(a.at("id"));
    v.tokens[id] = a.at("content").get<std::string>();
    v.types[id] = !a.value("special", false) ? kUserDefined : v.tokens[id] == unk ? kUnknown : kControl;
  }
  v.finish();
  const auto merges = model.value("merges", nlohmann::json::array());
  v.scores.assign(n, -static_cast<float>(merges.size() + 1));  // below every merge: never a merge result
  for (size_t rank = merges.size(); rank-- > 0;) {  // the first (best) merge of a token wins
    const auto& m = merges[rank];
    std::string merged;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json merge '{}' is not two tokens", s);
      merged = s.substr(0, sp) + s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2) {
      merged = m[0].get<std::string>() + m[1].get<std::string>();
    } else {
      fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json merge entries must be strings or pairs");
    }
    if (const int32_t id = v.find(merged); id >= 0) v.scores[static_cast<size_t>(id)] = -static_cast<float>(rank);
  }
  auto id_of = [&](const char* key, int32_t fallback) {
    int64_t x = config.get_int(key, fallback);
    return x >= 0 && static_cast<size_t>(x) < n ? static_cast<int32_t>(x) : -1;
  };
  v.bos = id_of("tokenizer.bos_token_id", config.get_int("bos_token_id", -1));
  v.eos = id_of("tokenizer.eos_token_id", config.get_int("eos_token_id", -1));
  v.unk = unk.empty() ? -1 : v.find(unk);
  v.add_bos = adds_bos(j, v, config);
  v.add_space_prefix = prefix;
  return make_spm(std::move(v));
}

std::unique_ptr<Tokenizer> bpe_from_json(const nlohmann::json& j, const Kv& config) {
  if (!j.is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json is not a JSON object");
  const auto& model = j.contains("model") ? j["model"] : nlohmann::json();
  if (!model.is_object() || model.value("type", "BPE") != "BPE")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json model type '{}' is not supported (BPE only)",
         model.is_object() ? model.value("type", "?") : std::string("?"));
  if (bool prefix = false; is_spm_style(j, model, &prefix)) return spm_from_json(j, model, prefix, config);
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
  v.add_space_prefix = false;
  v.finish();
  v.add_bos = adds_bos(j, v, config);
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
