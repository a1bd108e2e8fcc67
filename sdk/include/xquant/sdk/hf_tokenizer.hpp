// hf_tokenizer.hpp: a Hugging Face tokenizer.json, tokenizer_config.json and
// special_tokens_map.json synthesised from a GGUF vocabulary, for writers of
// HF-layout checkpoints whose source is a GGUF file (compressed-tensors, AWQ,
// GPTQ). Header-only; include it from a plugin that links
// nlohmann_json::nlohmann_json and fill GgufVocabulary from the source's
// "tokenizer.ggml.*" keys (plugins/gguf/gguf_vocabulary.cpp reads them from a
// GGUF file; compile it in with gguf_file.cpp and gguf_types.cpp).
//
// The files tokenize as llama.cpp does with the same vocabulary:
//   - tokenizer.ggml.model "llama" (SentencePiece, llama.cpp's
//     llm_tokenizer_spm): a BPE model with byte_fallback whose merges are
//     every split of every token into two tokens, ranked by the merged
//     token's score, as transformers' GGUF converter derives them
//     (transformers/tokenization_utils_base.py generate_merges, used by
//     integrations/gguf/gguf_tokenizer_mapping.py); spaces become U+2581 and
//     one is prepended (normalizers Prepend + Replace, as llama.cpp's
//     add_space_prefix and llama_escape_whitespace);
//   - tokenizer.ggml.model "gpt2" (byte-level BPE): the GGUF's merges, and
//     the pre-tokenizer Hugging Face ships for the tokenizer.ggml.pre name
//     (the regexes llama.cpp's llm_tokenizer_bpe copied from those files).
// Anything else throws sdk::Error(XQ_ERR_UNSUPPORTED) naming the key.
#pragma once

#include <xquant/sdk/host.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace xquant::sdk::hf_tokenizer {

// llama.cpp token types (llama-vocab.h LLAMA_TOKEN_TYPE_*).
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// The tokenizer.ggml.* keys of a GGUF file.
struct GgufVocabulary {
  std::string model;  // tokenizer.ggml.model: "llama" or "gpt2"
  std::string pre;    // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;
  std::vector<double> scores;     // may be empty
  std::vector<int64_t> types;     // may be empty (all normal)
  std::vector<std::string> merges;  // "a b", gpt2 only
  int64_t bos = -1, eos = -1, unk = -1, pad = -1;
  int add_bos = -1, add_eos = -1, add_space_prefix = -1;  // -1: absent from the file
  std::string chat_template;
};

namespace detail {

inline int64_t type_of(const GgufVocabulary& v, size_t id) {
  return id < v.types.size() ? v.types[id] : static_cast<int64_t>(kNormal);
}

inline std::string token_or_empty(const GgufVocabulary& v, int64_t id) {
  return id >= 0 && static_cast<size_t>(id) < v.tokens.size() ? v.tokens[static_cast<size_t>(id)] : std::string();
}

// Code point boundaries of a UTF-8 string (byte offsets, the end included).
inline std::vector<size_t> char_boundaries(const std::string& s) {
  std::vector<size_t> b;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) b.push_back(i);
  b.push_back(s.size());
  return b;
}

// transformers' generate_merges(vocab, vocab_scores): for each token every
// split into two tokens, those of one token ordered by (left id, right id),
// then all stably sorted by (score, left length, right length), descending,
// lengths in code points. Control tokens take no part (they are added
// tokens, matched before the model runs).
inline nlohmann::json spm_merges(const GgufVocabulary& v) {
  std::unordered_map<std::string, int64_t> id_of;
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (type_of(v, i) != kControl) id_of[v.tokens[i]] = static_cast<int64_t>(i);  // last wins, as llama.cpp
  struct Merge {
    std::string l, r;
    double score;
    size_t l_len, r_len;
  };
  std::vector<Merge> all;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (type_of(v, i) == kControl) continue;
    const std::string& t = v.tokens[i];
    const std::vector<size_t> b = char_boundaries(t);
    std::vector<std::tuple<int64_t, int64_t, Merge>> local;
    for (size_t k = 1; k + 1 < b.size(); ++k) {
      std::string l = t.substr(0, b[k]), r = t.substr(b[k]);
      auto li = id_of.find(l), ri = id_of.find(r);
      if (li == id_of.end() || ri == id_of.end()) continue;
      const double score = i < v.scores.size() ? v.scores[i] : 0.0;
      local.emplace_back(li->second, ri->second, Merge{l, r, score, k, b.size() - 1 - k});
    }
    std::stable_sort(local.begin(), local.end(), [](const auto& a, const auto& c) {
      return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(c), std::get<1>(c));
    });
    for (auto& m : local) all.push_back(std::move(std::get<2>(m)));
  }
  std::stable_sort(all.begin(), all.end(), [](const Merge& a, const Merge& c) {
    return std::tie(a.score, a.l_len, a.r_len) > std::tie(c.score, c.l_len, c.r_len);
  });
  nlohmann::json out = nlohmann::json::array();
  for (const auto& m : all) out.push_back({m.l, m.r});
  return out;
}

// The pre_tokenizer object Hugging Face's own tokenizer.json carries for a
// llama.cpp tokenizer.ggml.pre name (llama.cpp's regex lists in
// llm_tokenizer_bpe were copied from these), and whether that family
// ignores merges for whole-token pieces (model.ignore_merges).
struct BytePre {
  nlohmann::json pre_tokenizer;
  bool ignore_merges = false;
  bool add_bos = false;  // llama.cpp's default when the file has no add_bos_token
};

inline nlohmann::json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

inline nlohmann::json split_then_bytes(const char* regex) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
            byte_level(false)}}};
}

inline BytePre byte_pre_for(const std::string& name) {
  // Meta-Llama-3's tokenizer.json and Qwen2's (the second differs in \p{N}).
  static const char* kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (name == "gpt-2" || name.empty()) return {byte_level(true), false, false};
  if (name == "llama3" || name == "llama-v3" || name == "llama-bpe") return {split_then_bytes(kLlama3), true, true};
  if (name == "qwen2") return {split_then_bytes(kQwen2), false, false};
  if (name == "smollm" || name == "starcoder")  // bigcode's: single digits, then GPT-2
    return {{{"type", "Sequence"},
             {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}},
            false,
            false};
  throw Error(XQ_ERR_UNSUPPORTED, "tokenizer.ggml.pre '" + name +
                                      "' has no Hugging Face pre-tokenizer this writer can synthesise "
                                      "(gpt-2, llama3, llama-v3, llama-bpe, qwen2, smollm, starcoder)");
}

inline nlohmann::json added_tokens(const GgufVocabulary& v) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int64_t t = type_of(v, i);
    if (t != kControl && t != kUserDefined && t != kUnknown) continue;
    out.push_back({{"id", i},
                   {"content", v.tokens[i]},
                   {"single_word", false},
                   {"lstrip", false},
                   {"rstrip", false},
                   {"normalized", false},
                   {"special", t != kUserDefined}});
  }
  return out;
}

inline nlohmann::json vocab_object(const GgufVocabulary& v) {
  nlohmann::json o = nlohmann::json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) o[v.tokens[i]] = i;  // a duplicate text keeps its last id, as llama.cpp
  return o;
}

// "Prepend BOS" in tokenizer.json is a TemplateProcessing post-processor.
inline nlohmann::json bos_template(const std::string& bos, int64_t bos_id) {
  const nlohmann::json b = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
  return {{"type", "TemplateProcessing"},
          {"single", {b, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"pair", {b, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, b, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
          {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
}

}  // namespace detail

// Whether BOS is prepended: the file's add_bos_token, else llama.cpp's
// default (SentencePiece yes; byte-level BPE per tokenizer.ggml.pre).
inline bool adds_bos(const GgufVocabulary& v) {
  if (v.add_bos >= 0) return v.add_bos != 0;
  if (v.model == "llama") return true;
  return v.model == "gpt2" && detail::byte_pre_for(v.pre).add_bos;
}

// tokenizer.json. Throws sdk::Error for a vocabulary it cannot express.
inline nlohmann::json tokenizer_json(const GgufVocabulary& v) {
  if (v.tokens.empty()) throw Error(XQ_ERR_MALFORMED, "the GGUF vocabulary (tokenizer.ggml.tokens) is empty");
  if (!v.types.empty() && v.types.size() != v.tokens.size())
    throw Error(XQ_ERR_MALFORMED, "tokenizer.ggml.token_type has " + std::to_string(v.types.size()) +
                                      " entries for " + std::to_string(v.tokens.size()) + " tokens");
  if (!v.scores.empty() && v.scores.size() != v.tokens.size())
    throw Error(XQ_ERR_MALFORMED, "tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries for " +
                                      std::to_string(v.tokens.size()) + " tokens");
  nlohmann::json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = detail::added_tokens(v);
  nlohmann::json model = {{"type", "BPE"},          {"dropout", nullptr},          {"continuing_subword_prefix", nullptr},
                          {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                          {"ignore_merges", false}};
  model["unk_token"] = v.unk >= 0 ? nlohmann::json(detail::token_or_empty(v, v.unk)) : nlohmann::json(nullptr);
  const bool add_bos = adds_bos(v) && v.bos >= 0 && static_cast<size_t>(v.bos) < v.tokens.size();
  if (v.model == "llama") {
    const bool prefix = v.add_space_prefix != 0;  // llama.cpp's default: true
    nlohmann::json steps = nlohmann::json::array();
    if (prefix) steps.push_back({{"type", "Prepend"}, {"prepend", "\u2581"}});
    steps.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", steps}};
    j["pre_tokenizer"] = nullptr;
    model["fuse_unk"] = true;
    model["byte_fallback"] = true;
    model["vocab"] = detail::vocab_object(v);
    model["merges"] = detail::spm_merges(v);
    nlohmann::json dec = {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                          {{"type", "ByteFallback"}},
                          {{"type", "Fuse"}}};
    if (prefix) dec.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", dec}};
  } else if (v.model == "gpt2") {
    const detail::BytePre pre = detail::byte_pre_for(v.pre);
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = pre.pre_tokenizer;
    model["ignore_merges"] = pre.ignore_merges;
    model["vocab"] = detail::vocab_object(v);
    nlohmann::json merges = nlohmann::json::array();
    for (const auto& m : v.merges) {
      const size_t sp = m.find(' ', 1);  // a merge's left side is never empty
      if (sp == std::string::npos)
        throw Error(XQ_ERR_MALFORMED, "tokenizer.ggml.merges entry '" + m + "' is not two tokens separated by a space");
      merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
    }
    model["merges"] = merges;
    j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  } else {
    throw Error(XQ_ERR_UNSUPPORTED, "tokenizer.ggml.model '" + v.model +
                                        "' has no Hugging Face tokenizer.json this writer can synthesise (llama, gpt2)");
  }
  j["post_processor"] = add_bos ? detail::bos_template(v.tokens[static_cast<size_t>(v.bos)], v.bos) : nlohmann::json();
  j["model"] = model;
  return j;
}

// special_tokens_map.json: the named special tokens that exist.
inline nlohmann::json special_tokens_map(const GgufVocabulary& v) {
  nlohmann::json m = nlohmann::json::object();
  const std::pair<const char*, int64_t> named[] = {
      {"bos_token", v.bos}, {"eos_token", v.eos}, {"unk_token", v.unk}, {"pad_token", v.pad}};
  for (const auto& [key, id] : named)
    if (id >= 0 && static_cast<size_t>(id) < v.tokens.size()) m[key] = v.tokens[static_cast<size_t>(id)];
  return m;
}

// tokenizer_config.json: the generic fast tokenizer class over
// tokenizer.json, its special tokens and BOS/EOS flags, the chat template.
inline nlohmann::json tokenizer_config(const GgufVocabulary& v) {
  nlohmann::json c = special_tokens_map(v);
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  c["add_bos_token"] = adds_bos(v);
  c["add_eos_token"] = v.add_eos > 0;
  c["clean_up_tokenization_spaces"] = false;
  if (!v.chat_template.empty()) c["chat_template"] = v.chat_template;
  return c;
}

}  // namespace xquant::sdk::hf_tokenizer
