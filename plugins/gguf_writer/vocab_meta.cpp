// vocab_meta.cpp: see vocab_meta.hpp.
#include "vocab_meta.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstring>
#include <map>
#include <vector>

namespace xquant::gguf {

using sdk::Error;

bool copy_gguf_tokenizer(Emitter& out, const std::string& path) {
  File src(path);
  bool any = false;
  for (const auto& [key, v] : src.kv())
    if (key.rfind("tokenizer.", 0) == 0) {
      Value copy = v;
      if (v.type == VType::ARRAY && v.elem == VType::STRING) copy.strings = src.strings(v);  // long ones stay in the file
      out.set(key, std::move(copy));
      any = true;
    }
  return any;
}

bool write_config_tokenizer(Emitter& out, const sdk::Host& host, const xq_kv* config) {
  const sdk::KvReader cfg(host, config);
  if (!cfg.has("tokenizer.model") || !cfg.has("tokenizer.tokens")) return false;
  const xq_host_api* api = host.api();
  const uint64_t n = api->kv_count(api->ctx, config);
  for (uint64_t i = 0; i < n; ++i) {
    const char* k = api->kv_key_at(api->ctx, config, i);
    if (!k || std::strncmp(k, "tokenizer.", 10) != 0 || std::strcmp(k, "tokenizer.huggingface_json") == 0) continue;
    const std::string name = k + 10;
    // The loader dropped "ggml." from every key but the chat templates.
    const std::string key = name.rfind("chat_template", 0) == 0 ? std::string(k) : "tokenizer.ggml." + name;
    const xq_value v = *cfg.get(k);
    switch (v.type) {
      case XQ_VALUE_STRING: out.set(key, str_value(v.s ? v.s : "")); break;
      case XQ_VALUE_BOOL: out.set(key, bool_value(v.i != 0)); break;
      case XQ_VALUE_INT: out.set(key, u32_value(v.i)); break;  // every integer tokenizer key is a u32 token id or count
      case XQ_VALUE_FLOAT: out.set(key, f32_value(v.f)); break;
      case XQ_VALUE_FLOAT_ARRAY: out.set(key, f32s_value(std::vector<double>(v.floats, v.floats + v.count))); break;
      case XQ_VALUE_STRING_ARRAY: {
        std::vector<std::string> strings;
        for (uint64_t s = 0; s < v.count; ++s) strings.emplace_back(v.strings[s] ? v.strings[s] : "");
        out.set(key, strings_value(strings));
        break;
      }
      case XQ_VALUE_INT_ARRAY:
        // token_type is i32; the only other integer array, a UGM
        // tokenizer's precompiled_charsmap, is u8 and not kept here.
        if (name != "token_type")
          throw Error(XQ_ERR_UNSUPPORTED, "gguf writer: the source's tokenizer key '" + key +
                                              "' (an integer array) has no GGUF type this writer knows");
        out.set(key, i32s_value(std::vector<int64_t>(v.ints, v.ints + v.count)));
        break;
      default: break;
    }
  }
  return true;
}

namespace {

// llama.cpp token types (llama-vocab.h LLAMA_TOKEN_TYPE_*).
constexpr int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kByte = 6;

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
    throw Error(XQ_ERR_UNSUPPORTED, where + ": only byte-level BPE and SentencePiece (byte_fallback, U+2581 "
                                            "spaces) tokenizers convert to GGUF here (the pre_tokenizer has no "
                                            "ByteLevel step)");
  if (regexes.empty()) return digits ? "smollm" : "gpt-2";
  const std::string& r = regexes[0];
  if (r.find("\\p{N}{1,3}") != std::string::npos) return "llama-bpe";
  if (r.find("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|") != std::string::npos) return "qwen2";
  if (r.find("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+") != std::string::npos) return "gpt-2";
  throw Error(XQ_ERR_UNSUPPORTED, where + ": the pre-tokenizer regex '" + r +
                                      "' is not one whose llama.cpp name is known (gpt-2, llama-bpe, qwen2, smollm)");
}

}  // namespace

namespace {

// The vocabulary of a tokenizer.json by id: model.vocab and added_tokens
// (special: CONTROL, else USER_DEFINED), holes filled as
// convert_hf_to_gguf.py fills them ([PAD<id>], USER_DEFINED).
struct IdVocab {
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
};

IdVocab vocab_by_id(const nlohmann::json& j, const nlohmann::json& model, const std::string& where) {
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
  IdVocab v;
  v.tokens.resize(static_cast<size_t>(n));
  v.types.assign(static_cast<size_t>(n), kNormal);
  for (int64_t id = 0; id < n; ++id) {
    auto it = by_id.find(id);
    v.tokens[id] = it != by_id.end() ? it->second : "[PAD" + std::to_string(id) + "]";
    if (it == by_id.end()) v.types[id] = kUserDefined;
    if (types.count(id)) v.types[id] = types[id];
  }
  return v;
}

// A merge as its two sides ("a b" or [a, b]).
std::pair<std::string, std::string> merge_sides(const nlohmann::json& m, const std::string& where) {
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ', 1);  // a merge's left side is never empty
    if (sp != std::string::npos) return {s.substr(0, sp), s.substr(sp + 1)};
  }
  throw Error(XQ_ERR_MALFORMED, where + ": model.merges holds an entry that is neither \"a b\" nor [a, b]");
}

// Whether a normalizer or pre-tokenizer step turns ' ' into U+2581 and
// whether it prepends one: the two ways Hugging Face writes SentencePiece's
// whitespace handling (transformers' LlamaConverter: normalizers Prepend +
// Replace; its legacy=False form: pre_tokenizer Metaspace).
struct SpmSpaces {
  bool replaces = false, prepends = false;
};

SpmSpaces spm_spaces(const nlohmann::json& j) {
  SpmSpaces s;
  std::vector<const nlohmann::json*> steps;
  for (const char* part : {"normalizer", "pre_tokenizer"}) {
    if (!j.contains(part) || !j[part].is_object()) continue;
    const nlohmann::json& o = j[part];
    const char* list = o.contains("normalizers") ? "normalizers" : "pretokenizers";
    if (o.value("type", "") == "Sequence" && o.contains(list) && o[list].is_array())
      for (const auto& step : o[list]) steps.push_back(&step);
    else steps.push_back(&o);
  }
  const std::string kSpace = "\u2581";
  for (const auto* st : steps) {
    const std::string type = st->value("type", "");
    if (type == "Prepend" && st->value("prepend", "") == kSpace) s.prepends = true;
    if (type == "Replace" && st->contains("pattern") && (*st)["pattern"].is_object() &&
        (*st)["pattern"].value("String", "") == " " && st->value("content", "") == kSpace)
      s.replaces = true;
    if (type == "Metaspace" && st->value("replacement", "") == kSpace) {
      s.replaces = true;
      const std::string scheme = st->value("prepend_scheme", st->value("add_prefix_space", true) ? "always" : "never");
      s.prepends = scheme != "never";
    }
  }
  return s;
}

// A SentencePiece vocabulary in Hugging Face's BPE form (byte_fallback,
// spaces as U+2581) as llama.cpp's "llama" (SPM) tokenizer keys. llama.cpp's
// llm_tokenizer_spm merges the adjacent pair whose joined token has the
// highest score; the BPE form merges the pair of lowest merge rank. So each
// token's score is minus the position of its first merge among the distinct
// merge results (tokens no merge makes score 0 and are never merged): the
// same order. Normal tokens no merge makes (single characters: never merged
// into, so their scores order nothing) follow in id order, as SentencePiece
// lists its pieces by score; control, byte and unknown tokens score 0. For a
// vocabulary synthesised from a GGUF (sdk/hf_tokenizer.hpp ranks merges by
// the GGUF's scores) this gives the GGUF's order back; stories260K's scores
// (0, -1, -2, ... over its normal tokens) come back exactly.
void write_spm_vocab(Emitter& out, const nlohmann::json& model, IdVocab v, bool prepends, const std::string& where) {
  std::map<std::string, int64_t> id_of;
  for (size_t i = 0; i < v.tokens.size(); ++i) id_of[v.tokens[i]] = static_cast<int64_t>(i);
  std::vector<double> scores(v.tokens.size(), 0.0);
  std::vector<bool> ranked(v.tokens.size(), false);
  double next = 0;
  if (model.contains("merges") && model["merges"].is_array())
    for (const auto& m : model["merges"]) {
      const auto [l, r] = merge_sides(m, where);
      auto it = id_of.find(l + r);
      if (it == id_of.end() || ranked[it->second]) continue;
      ranked[it->second] = true;
      scores[it->second] = -(next++);
    }
  // Byte-fallback pieces <0xNN> are BYTE tokens (llama.cpp decodes them to
  // the byte); the unknown piece is UNKNOWN, as gguf-py's LlamaHfVocab types them.
  int64_t unk = -1;
  if (model.contains("unk_token") && model["unk_token"].is_string())
    if (auto it = id_of.find(model["unk_token"].get<std::string>()); it != id_of.end()) unk = it->second;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const std::string& t = v.tokens[i];
    if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
        std::isxdigit(static_cast<unsigned char>(t[4])))
      v.types[i] = kByte;
  }
  if (unk >= 0) v.types[static_cast<size_t>(unk)] = kUnknown;
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (!ranked[i] && v.types[i] == kNormal) scores[i] = -(next++);
  out.set("tokenizer.ggml.model", str_value("llama"));
  out.set("tokenizer.ggml.tokens", strings_value(v.tokens));
  out.set("tokenizer.ggml.scores", f32s_value(scores));
  out.set("tokenizer.ggml.token_type", i32s_value(v.types));
  if (unk >= 0) out.set("tokenizer.ggml.unknown_token_id", u32_value(unk));
  out.set("tokenizer.ggml.add_space_prefix", bool_value(prepends));
}

void write_byte_bpe_vocab(Emitter& out, const nlohmann::json& j, const nlohmann::json& model, const IdVocab& v,
                          const std::string& where) {
  std::vector<std::string> merges;
  if (model.contains("merges") && model["merges"].is_array())
    for (const auto& m : model["merges"]) {
      const auto [l, r] = merge_sides(m, where);
      merges.push_back(l + " " + r);
    }
  out.set("tokenizer.ggml.model", str_value("gpt2"));
  out.set("tokenizer.ggml.pre", str_value(pre_tokenizer_name(j.value("pre_tokenizer", nlohmann::json()), where)));
  out.set("tokenizer.ggml.tokens", strings_value(v.tokens));
  out.set("tokenizer.ggml.token_type", i32s_value(v.types));
  out.set("tokenizer.ggml.merges", strings_value(merges));
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
  const IdVocab v = vocab_by_id(j, model, where);
  const int64_t n = static_cast<int64_t>(v.tokens.size());
  const SpmSpaces spaces = spm_spaces(j);
  if (model.value("byte_fallback", false) && spaces.replaces) write_spm_vocab(out, model, v, spaces.prepends, where);
  else write_byte_bpe_vocab(out, j, model, v, where);
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
