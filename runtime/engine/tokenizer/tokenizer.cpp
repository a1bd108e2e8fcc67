// tokenizer.cpp: Tokenizer::from_config and the shared pieces declared in
// tokenizer_impl.hpp (vocabulary, special-token partition, UTF-8 and GPT-2
// byte<->unicode helpers). The config keys are the canonical "tokenizer.*"
// keys (GGUF's tokenizer.ggml.* without "ggml."), so GGUF and HF checkpoints
// reach the same code; a HF tokenizer.json goes through tokenizer_hf.cpp.
#include "engine/tokenizer/tokenizer.hpp"

#include "core/error.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <algorithm>

namespace xquant {

namespace tok {

std::unique_ptr<Tokenizer> from_hf_json(const std::string& json, const Kv& config);  // tokenizer_hf.cpp

size_t utf8_len(unsigned char lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

std::string codepoint_to_utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string byte_token_text(uint8_t b) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
}

std::string byte_token_value(std::string_view text) {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>' || hex(text[3]) < 0 || hex(text[4]) < 0) return {};
  return std::string(1, static_cast<char>(hex(text[3]) * 16 + hex(text[4])));
}

std::string unescape_whitespace(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, "\xe2\x96\x81") == 0) {
      out += ' ';
      i += 3;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::string utf8_as_llama_reads(std::string_view text) {
  static const std::string kReplacement = codepoint_to_utf8(0xFFFD);
  std::string out;
  out.reserve(text.size());
  auto cont = [&](size_t i) { return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80; };
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    // unicode_cpt_from_utf8: the lead byte's high bits give the length; all
    // continuation bytes must be 10xxxxxx; nothing else is checked.
    size_t n = c < 0x80 ? 1 : c < 0xC0 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 0;
    for (size_t k = 1; k < n; ++k)
      if (!cont(i + k)) n = 0;
    if (n == 0) {  // llama.cpp skips one byte and reads U+FFFD
      out += kReplacement;
      ++i;
      continue;
    }
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    out += cp > 0x10FFFF ? kReplacement : codepoint_to_utf8(cp);
    i += n;
  }
  return out;
}

namespace {
// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves,
// the other 68 bytes to U+0100.. in byte order.
struct ByteMap {
  std::string to_unicode[256];
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteMap() {
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = keep ? b : 256 + n++;
      to_unicode[b] = codepoint_to_utf8(cp);
      to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// Decodes one UTF-8 code point at s[i]; returns its length (1 for invalid).
size_t decode_cp(std::string_view s, size_t i, uint32_t* cp) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = utf8_len(c);
  if (n == 1 || i + n > s.size()) {
    *cp = c;
    return 1;
  }
  uint32_t v = c & (0xFF >> (n + 1));
  for (size_t k = 1; k < n; ++k) v = (v << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *cp = v;
  return n;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to_unicode[b]; }

bool unicode_to_bytes(std::string_view text, std::string* out) {
  const auto& m = byte_map().to_byte;
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    i += decode_cp(text, i, &cp);
    auto it = m.find(cp);
    if (it == m.end()) return false;
    out->push_back(static_cast<char>(it->second));
  }
  return true;
}

void Vocab::finish() {
  to_id.clear();
  to_id.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) to_id[tokens[i]] = static_cast<int32_t>(i);
  specials.clear();
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t t = type(static_cast<int32_t>(i));
    if ((t == kControl || t == kUserDefined || t == kUnknown) && !tokens[i].empty())
      specials.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(specials.begin(), specials.end(),
                   [&](int32_t a, int32_t b) { return tokens[a].size() > tokens[b].size(); });
}

std::vector<Fragment> partition_special(const Vocab& vocab, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, text});
  for (int32_t id : vocab.specials) {
    const int32_t type = vocab.type(id);
    if (!parse_special && type != kUserDefined) continue;  // control/unknown: only when asked
    const std::string& sp = vocab.tokens[id];
    std::vector<Fragment> next;
    next.reserve(frags.size());
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t pos; (pos = rest.find(sp)) != std::string_view::npos;) {
        if (pos > 0) next.push_back({-1, rest.substr(0, pos)});
        next.push_back({id, {}});
        rest = rest.substr(pos + sp.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    frags.swap(next);
  }
  return frags;
}

namespace {

int32_t id_or(const Kv& c, const char* key, int32_t fallback, size_t n) {
  int64_t v = c.get_int(key, fallback);
  return v >= 0 && static_cast<size_t>(v) < n ? static_cast<int32_t>(v) : -1;
}

// `pre` (BPE only) supplies llama.cpp's per-pre-tokenizer defaults;
// `bpe_default_id` is the BOS/EOS id a BPE file without them gets (11 for
// "gpt2", none for "gemma4").
Vocab vocab_from_config(const Kv& c, bool spm, const PreTokenizer* pre = nullptr, int32_t bpe_default_id = 11) {
  Vocab v;
  const KvValue* toks = c.find("tokenizer.tokens");
  if (!toks || toks->type() != XQ_VALUE_STRING_ARRAY)
    fail(XQ_ERR_NOT_FOUND, "tokenizer: the model configuration has no 'tokenizer.tokens' string array");
  v.tokens = toks->as_strings();
  const size_t n = v.tokens.size();
  if (const KvValue* s = c.find("tokenizer.scores")) {
    if (s->type() != XQ_VALUE_FLOAT_ARRAY || s->as_floats().size() != n)
      fail(XQ_ERR_MALFORMED, "tokenizer: 'tokenizer.scores' must be a float array of {} entries", n);
    for (double d : s->as_floats()) v.scores.push_back(static_cast<float>(d));
  } else if (spm) {
    v.scores.assign(n, 0.0f);
  }
  if (const KvValue* t = c.find("tokenizer.token_type")) {
    if (t->type() != XQ_VALUE_INT_ARRAY || t->as_ints().size() != n)
      fail(XQ_ERR_MALFORMED, "tokenizer: 'tokenizer.token_type' must be an int array of {} entries", n);
    for (int64_t x : t->as_ints()) v.types.push_back(static_cast<int32_t>(x));
  }
  // llama.cpp's defaults when the file names no special ids.
  v.bos = id_or(c, "tokenizer.bos_token_id", spm ? 1 : (pre && pre->no_bos ? -1 : bpe_default_id), n);
  v.eos = id_or(c, "tokenizer.eos_token_id", spm ? 2 : bpe_default_id, n);
  v.unk = id_or(c, "tokenizer.unknown_token_id", spm ? 0 : -1, n);
  v.pad = id_or(c, "tokenizer.padding_token_id", -1, n);
  v.eot = id_or(c, "tokenizer.eot_token_id", -1, n);
  v.eom = id_or(c, "tokenizer.eom_token_id", -1, n);
  v.add_bos = (pre && pre->force_add_bos) || c.get_bool("tokenizer.add_bos_token", spm || (pre && pre->add_bos));
  v.add_space_prefix = c.get_bool("tokenizer.add_space_prefix", spm);
  v.finish();
  return v;
}

}  // namespace

namespace {

// The pre-tokenizer a "gpt2" vocabulary names; a missing or empty
// tokenizer.pre is llama.cpp's "default".
PreTokenizer pre_tokenizer_from_config(const Kv& config) {
  std::string name = config.get_string("tokenizer.pre", "");
  if (name.empty()) name = "default";
  PreTokenizerLookup found = find_pre_tokenizer(name);
  if (found.status == PreTokenizerLookup::kNotByteLevel)
    fail(XQ_ERR_UNSUPPORTED,
         "tokenizer: pre-tokenizer 'tokenizer.pre' = '{}' is not supported: it splits whitespace words for a "
         "normalizing tokenizer, not pieces for BPE",
         name);
  if (found.status == PreTokenizerLookup::kUnknown)
    fail(XQ_ERR_UNSUPPORTED,
         "tokenizer: pre-tokenizer 'tokenizer.pre' = '{}' is not supported ({} names known to llama.cpp are, "
         "e.g. gpt-2, llama-bpe, qwen2, deepseek-v3, gpt-4o, default)",
         name, pre_tokenizer_names().size());
  return found.pre;
}

}  // namespace

}  // namespace tok

std::unique_ptr<Tokenizer> Tokenizer::from_config(const Kv& config) {
  const std::string model = config.get_string("tokenizer.model", "");
  if (model == "llama") return tok::make_spm(tok::vocab_from_config(config, true));
  // "gemma4" is llama.cpp's name for Gemma 4's BPE: always the gemma4
  // pre-tokenizer, and no special ids unless the file names them.
  if (model == "gpt2" || model == "gemma4") {
    const bool gemma4 = model == "gemma4";
    const tok::PreTokenizer pre = gemma4 ? tok::find_pre_tokenizer("gemma4").pre : tok::pre_tokenizer_from_config(config);
    tok::Vocab v = tok::vocab_from_config(config, false, &pre, gemma4 ? -1 : 11);
    std::vector<std::string> merges;
    if (const KvValue* m = config.find("tokenizer.merges")) {
      if (m->type() != XQ_VALUE_STRING_ARRAY) fail(XQ_ERR_MALFORMED, "tokenizer: 'tokenizer.merges' must be a string array");
      merges = m->as_strings();
    }
    return tok::make_bpe(std::move(v), std::move(merges), pre);
  }
  if (const KvValue* j = config.find("tokenizer.huggingface_json"); j && j->type() == XQ_VALUE_STRING)
    return tok::from_hf_json(j->as_string(), config);
  if (model.empty()) fail(XQ_ERR_NOT_FOUND, "tokenizer: the model configuration has no tokenizer (no 'tokenizer.model' or 'tokenizer.huggingface_json')");
  fail(XQ_ERR_UNSUPPORTED, "tokenizer: tokenizer.model '{}' is not supported (llama, gpt2, gemma4)", model);
}

}  // namespace xquant
