// tokenizer_impl.hpp: pieces shared by the SentencePiece and byte-level BPE
// tokenizers (internal to runtime/engine/tokenizer/; users include
// tokenizer.hpp only): the vocabulary with llama.cpp's token attributes, the
// split of input text around special tokens, UTF-8 and GPT-2 byte<->unicode
// helpers, and the two implementation classes' factories.
#pragma once

#include "engine/tokenizer/tokenizer.hpp"

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace xquant::tok {

// GGUF tokenizer.ggml.token_type values.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  std::unordered_map<std::string, int32_t> to_id;  // last id wins for duplicate texts (as llama.cpp)
  int32_t bos = -1, eos = -1, unk = -1, pad = -1, eot = -1, eom = -1;
  bool add_bos = false;
  bool add_space_prefix = true;  // SPM only
  std::vector<int32_t> specials;  // control / user-defined / unknown ids, longest text first

  int32_t find(std::string_view text) const {
    auto it = to_id.find(std::string(text));
    return it == to_id.end() ? -1 : it->second;
  }
  int32_t type(int32_t id) const { return types.empty() ? kNormal : types[static_cast<size_t>(id)]; }
  void finish();  // builds to_id and specials
};

// A piece of the input: raw text to tokenize, or an already-known token.
struct Fragment {
  int32_t token = -1;  // >= 0: a special token
  std::string_view text;
};

// Splits `text` around the texts of vocab.specials (user-defined tokens
// always; control and unknown tokens only when parse_special), longest
// first, as llama.cpp's tokenizer_st_partition does.
std::vector<Fragment> partition_special(const Vocab& vocab, std::string_view text, bool parse_special);

// Byte length of the UTF-8 sequence starting with `lead` (1 for stray bytes).
size_t utf8_len(unsigned char lead);
std::string codepoint_to_utf8(uint32_t cp);
// GPT-2 byte-level mapping: each byte -> one printable code point (as UTF-8).
const std::string& byte_to_unicode(uint8_t b);
// Inverse over a whole token text; false when a code point has no byte.
bool unicode_to_bytes(std::string_view text, std::string* out);

// The regex list llama.cpp uses for a tokenizer.pre name; false if unknown.
bool pre_regexes(const std::string& pre, std::vector<std::string>* out, bool* ignore_merges);

std::unique_ptr<Tokenizer> make_spm(Vocab vocab);
// `regexes` are applied in sequence (each splits the pieces of the previous,
// keeping unmatched gaps), as llama.cpp's unicode_regex_split does.
std::unique_ptr<Tokenizer> make_bpe(Vocab vocab, std::vector<std::string> merges, std::vector<std::string> regexes,
                                    bool ignore_merges);

}  // namespace xquant::tok
