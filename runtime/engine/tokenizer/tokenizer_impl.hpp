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
// The text as llama.cpp's unicode_cpts_from_utf8 reads it before BPE
// pre-tokenization (src/unicode.cpp), re-encoded: each byte that does not
// start a sequence it accepts becomes U+FFFD, and what it accepts is
// re-encoded in shortest form (so an overlong C0 80 becomes 00). Code points
// past U+10FFFF, on which llama.cpp throws, also become U+FFFD. Valid UTF-8
// comes back unchanged.
std::string utf8_as_llama_reads(std::string_view text);
// Byte tokens of SentencePiece-style vocabularies: "<0xAB>" for 0xAB, and
// back (empty when `text` is not such a token).
std::string byte_token_text(uint8_t b);
std::string byte_token_value(std::string_view text);
// U+2581 -> ' ' (llama.cpp's llama_unescape_whitespace).
std::string unescape_whitespace(std::string_view text);
// GPT-2 byte-level mapping: each byte -> one printable code point (as UTF-8).
const std::string& byte_to_unicode(uint8_t b);
// Inverse over a whole token text; false when a code point has no byte.
bool unicode_to_bytes(std::string_view text, std::string* out);

// A byte-level BPE pre-tokenizer (pre_tokenizer.cpp): the regexes that
// split text into the pieces BPE merges within, and the vocabulary defaults
// llama.cpp ties to its tokenizer.pre name.
struct PreTokenizer {
  std::vector<std::string> regexes;  // PCRE2 syntax, applied in order
  bool ignore_merges = false;        // a piece that is a token is taken whole
  bool add_bos = false;              // tokenizer.add_bos_token's default
  bool no_bos = false;               // no BOS id unless the config names one
  std::string family;                // the shared regex list's name (llama.cpp's PRE_TYPE)
  // SentencePiece-style BPE (llama.cpp's gemma4 and sarvam-moe types): spaces
  // become U+2581 before the split, pieces stay raw UTF-8 (no GPT-2 byte
  // symbols) and bytes without a token fall back to <0xXX> tokens.
  bool byte_level = true;
  bool escape_whitespace = false;
  bool whole_newline_words = false;  // gemma4: a run of newlines that is a token is taken whole
  bool force_add_bos = false;        // gemma4: BOS whatever tokenizer.add_bos_token says
};

struct PreTokenizerLookup {
  enum Status { kFound, kUnknown, kNotByteLevel } status = kUnknown;
  PreTokenizer pre;
};

// The pre-tokenizer for a tokenizer.pre name, as llama.cpp maps it.
PreTokenizerLookup find_pre_tokenizer(std::string_view name);
// Every name find_pre_tokenizer() resolves, sorted.
std::vector<std::string> pre_tokenizer_names();

// Splits text with a list of regexes the way llama.cpp's unicode_regex_split
// does (regex_split.cpp): each regex splits every piece the previous one
// left, matches and the gaps between them both become pieces, and an empty
// match is a cut. Throws XQ_ERR_INVALID_ARGUMENT for a regex PCRE2 rejects.
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::vector<std::string>& regexes);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<Compiled> regexes_;
};

std::unique_ptr<Tokenizer> make_spm(Vocab vocab);
std::unique_ptr<Tokenizer> make_bpe(Vocab vocab, std::vector<std::string> merges, const PreTokenizer& pre);

}  // namespace xquant::tok
