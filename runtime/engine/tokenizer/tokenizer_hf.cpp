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
    const auto pat = pt.value("pattern", nlohmann::json::object());
    if (pat.contains("Regex")) out->push_back(pat["Regex"].get<std::string>());
    else if (pat.contains("String")) {
      // A literal: escape it for PCRE2.
      std::string s = "\\Q" + pat["String"].get<std::string>() + "\\E";
      out->push_back(s);
    } else {
      fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json pre_tokenizer Split has no Regex or String pattern");
    }
  } else if (type == "ByteLevel") {
    if (pt.value("use_regex", true))
      out->push_back("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)");
  } else if (type == "Digits") {
    out->push_back(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
  }
}

// Ids may leave holes (added tokens past the vocabulary), but an id this far
// past the number of entries only makes us allocate for nothing.
constexpr size_t kMaxIdGap = size_t{1} << 20;

// nlohmann's operator[] on a const object with a missing key is undefined
// behaviour and get<T>() throws its own exception type: every field below is
// looked up and type-checked, so a bad file gets a MALFORMED error naming it.
const nlohmann::json* member(const nlohmann::json* obj, const char* key) {
  if (!obj || !obj->is_object()) return nullptr;
  auto it = obj->find(key);
  return it == obj->end() ? nullptr : &*it;
}

const nlohmann::json& array_member(const nlohmann::json* obj, const char* key, const char* where) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  const nlohmann::json* v = member(obj, key);
  if (!v || v->is_null()) return kEmpty;
  if (!v->is_array()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json {} is not an array", where);
  return *v;
}

std::string string_of(const nlohmann::json* v, const std::string& where) {
  if (!v || !v->is_string()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json {} is not a string", where);
  return v->get<std::string>();
}

size_t id_of_entry(const nlohmann::json* v, const std::string& where, size_t entries) {
  if (!v || !v->is_number_unsigned())
    fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json {}: the id must be a non-negative integer", where);
  const uint64_t id = v->get<uint64_t>();
  if (id >= entries + kMaxIdGap)
    fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json {}: id {} is far past the {} vocabulary entries", where, id,
         entries);
  return static_cast<size_t>(id);
}

}  // namespace

std::unique_ptr<Tokenizer> from_hf_json(const std::string& text, const Kv& config) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json is not valid JSON: {}", e.what());
  }
  if (!j.is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json is not a JSON object");
  const nlohmann::json* model = member(&j, "model");
  const nlohmann::json* model_type = member(model, "type");
  const std::string type = model_type ? string_of(model_type, "model.type") : "BPE";
  if (!model || !model->is_object() || type != "BPE")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.json model type '{}' is not supported (BPE only)",
         model && model->is_object() ? type : std::string("?"));
  const nlohmann::json* byte_fallback = member(model, "byte_fallback");
  const nlohmann::json* decoder_obj = member(&j, "decoder");
  const nlohmann::json* decoder_type = member(decoder_obj, "type");
  const std::string decoder = decoder_type && decoder_type->is_string() ? decoder_type->get<std::string>() : "";
  if (!(byte_fallback && byte_fallback->is_boolean() && byte_fallback->get<bool>()) && decoder_obj &&
      decoder_obj->is_object() && decoder != "ByteLevel" && decoder != "Sequence")
    fail(XQ_ERR_UNSUPPORTED, "tokenizer: only byte-level BPE tokenizer.json files are supported");
  Vocab v;
  const nlohmann::json* vocab = member(model, "vocab");
  if (!vocab || !vocab->is_object()) fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json has no model.vocab object");
  const nlohmann::json& added = array_member(&j, "added_tokens", "added_tokens");
  const size_t entries = vocab->size() + added.size();
  size_t n = 0;
  for (auto it = vocab->begin(); it != vocab->end(); ++it)
    n = std::max(n, id_of_entry(&it.value(), "model.vocab['" + it.key() + "']", entries) + 1);
  for (size_t k = 0; k < added.size(); ++k)
    n = std::max(n, id_of_entry(member(&added[k], "id"), fmt::format("added_tokens[{}].id", k), entries) + 1);
  v.tokens.assign(n, std::string());
  v.types.assign(n, kUnused);
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    size_t id = it.value().get<size_t>();
    v.tokens[id] = it.key();
    v.types[id] = kNormal;
  }
  for (size_t k = 0; k < added.size(); ++k) {
    const size_t id = member(&added[k], "id")->get<size_t>();
    v.tokens[id] = string_of(member(&added[k], "content"), fmt::format("added_tokens[{}].content", k));
    const nlohmann::json* special = member(&added[k], "special");
    v.types[id] = special && special->is_boolean() && special->get<bool>() ? kControl : kUserDefined;
  }
  std::vector<std::string> merges;
  const nlohmann::json& merge_list = array_member(model, "merges", "model.merges");
  for (size_t k = 0; k < merge_list.size(); ++k) {
    const auto& m = merge_list[k];
    const std::string where = fmt::format("model.merges[{}]", k);
    if (m.is_string()) merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2) merges.push_back(string_of(&m[0], where) + " " + string_of(&m[1], where));
    else fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json merge entries must be strings or pairs");
  }
  std::vector<std::string> regexes;
  if (const nlohmann::json* pt = member(&j, "pre_tokenizer")) {
    try {
      collect_regexes(*pt, &regexes);
    } catch (const nlohmann::json::exception& e) {
      fail(XQ_ERR_MALFORMED, "tokenizer: tokenizer.json pre_tokenizer: {}", e.what());
    }
  }
  auto id_of = [&](const char* key, int32_t fallback) {
    int64_t x = config.get_int(key, fallback);
    return x >= 0 && static_cast<size_t>(x) < n ? static_cast<int32_t>(x) : -1;
  };
  v.bos = id_of("tokenizer.bos_token_id", config.get_int("bos_token_id", -1));
  v.eos = id_of("tokenizer.eos_token_id", config.get_int("eos_token_id", -1));
  v.add_bos = config.get_bool("tokenizer.add_bos_token", false);
  v.add_space_prefix = false;
  v.finish();
  const nlohmann::json* ignore_merges = member(model, "ignore_merges");
  return make_bpe(std::move(v), std::move(merges), std::move(regexes),
                  ignore_merges && ignore_merges->is_boolean() && ignore_merges->get<bool>());
}

}  // namespace xquant::tok
