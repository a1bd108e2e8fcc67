// pre_tokenizer.cpp: the byte-level BPE pre-tokenizers, by the names GGUF
// files give in tokenizer.ggml.pre (our canonical key "tokenizer.pre").
//
// The names, the families they share and each family's regex list follow
// llama.cpp: the name -> LLAMA_VOCAB_PRE_TYPE_* mapping in
// llama_vocab::impl::load() and the regex lists in the llm_tokenizer_bpe
// constructor (src/llama-vocab.cpp), together with the splitters of
// src/unicode.cpp that it uses instead of some regexes
// (unicode_regex_split_custom_*) and the "collapsed" std::regex it runs the
// others on (unicode_regex_split). Each list is applied in order by
// RegexSplitter (regex_split.cpp), PCRE2 with Unicode properties.
//
// Most of llama.cpp's regexes mean the same in PCRE2 and are kept as
// written. Where llama.cpp's engine gives them another meaning, the PCRE2
// form below says what it matches instead and why:
//   - unicode_regex_split maps \p{Lu} \p{Ll} \p{Lt} \p{Lm} \p{Lo} all to
//     "letter", so upper/lower-case classes do not distinguish case there
//     (youtu, tiny_aya): written with \p{L} here.
//   - regexes without \p{..} run there on std::wregex over text whose
//     non-ASCII whitespace was replaced by U+000B, so literal classes never
//     match those characters (deepseek-llm, deepseek-coder): written with
//     the whitespace code points cut out of their ranges.
//   - literal non-ASCII characters are written as \x{..} escapes of the
//     code points in llama.cpp's source (e.g. afmoe's range starts at
//     U+8C48, the NFC form of U+F900 it was typed as).
//   - \d on the std::wregex path matches ASCII digits only: [0-9] (superbpe).
//   - the custom splitters for kimi-k2 (unicode_regex_split_custom_kimi_k2)
//     and the digit grouping of afmoe/tiny_aya
//     (unicode_regex_split_custom_afmoe) are written as the regexes they
//     implement, including their quirks (see each).
// \s and \S are narrowed to llama.cpp's whitespace set by RegexSplitter.
#include "engine/tokenizer/tokenizer_impl.hpp"

#include <algorithm>
#include <map>

namespace xquant::tok {

namespace {

// "(?i:'s|'t|'re|'ve|'m|'ll|'d)" spelled case by case, as llama.cpp does
// (https://github.com/ggml-org/llama.cpp/pull/6920#issuecomment-2080233989).
#define XQ_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

// GPT-2 (unicode_regex_split_custom_gpt2 implements exactly this regex).
constexpr const char* kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

// Llama 3 (unicode_regex_split_custom_llama3): digits in groups of up to 3.
constexpr const char* kLlama3 = XQ_CONTRACTIONS
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Qwen2 (unicode_regex_split_custom_qwen2): Llama 3 with single digits.
constexpr const char* kQwen2 = XQ_CONTRACTIONS
    "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Qwen3.5 (unicode_regex_split_custom_qwen35): Qwen2 with combining marks
// kept in words.
constexpr const char* kQwen35 = XQ_CONTRACTIONS
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Bloom / Poro / GPT-3 Finnish: words up to whitespace or sentence punctuation.
constexpr const char* kBloom = " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+";

// Han and kana (the deepseek-v3 family splits them out).
constexpr const char* kHanKana = "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+";

// Splits lines from runs of newlines (unicode_regex_split_custom_newlines).
constexpr const char* kNewlines = "[^\\n]+|[\\n]+";

// Upper-then-lower letter runs, as llama.cpp rewrote tokenizer.json's
// [\p{Lu}...]*[\p{Ll}...]+ for std::regex: (?=[\p{L}])[^a-z] is "a letter
// that is not a-z" (upper case, or any non-ASCII letter).
#define XQ_UPPER "((?=[\\p{L}])([^a-z]))"
#define XQ_LOWER "((?=[\\p{L}])([^A-Z]))"
constexpr const char* kTekken = "[^\\r\\n\\p{L}\\p{N}]?" XQ_UPPER "*" XQ_LOWER "+|[^\\r\\n\\p{L}\\p{N}]?" XQ_UPPER
                                "+" XQ_LOWER "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kGpt4o = "[^\\r\\n\\p{L}\\p{N}]?" XQ_UPPER "*" XQ_LOWER "+" XQ_CONTRACTIONS
                               "?|[^\\r\\n\\p{L}\\p{N}]?" XQ_UPPER "+" XQ_LOWER "*" XQ_CONTRACTIONS
                               "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// granite-embed-multi-97m: GPT-4o's with combining marks counted as letters.
#define XQ_UPPER_M "((?=[\\p{L}\\p{M}])([^a-z]))"
#define XQ_LOWER_M "((?=[\\p{L}\\p{M}])([^A-Z]))"
constexpr const char* kGraniteEmbMulti = "[^\\r\\n\\p{L}\\p{N}]?" XQ_UPPER_M "*" XQ_LOWER_M "+" XQ_CONTRACTIONS
                                         "?|[^\\r\\n\\p{L}\\p{N}]?" XQ_UPPER_M "+" XQ_LOWER_M "*" XQ_CONTRACTIONS
                                         "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// tokenizer.json's case-split word classes as llama.cpp runs them: its
// \p{Lu}..\p{Lo} all mean "letter", so both classes are letters or marks.
constexpr const char* kCaseBlindWords = "[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]*[\\p{L}\\p{M}]+" XQ_CONTRACTIONS
                                        "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+[\\p{L}\\p{M}]*" XQ_CONTRACTIONS "?";

// DeepSeek-V3 family main regex (kept as written).
#define XQ_DEEPSEEK3_HEAD                                                               \
  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?" \
  "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+"
constexpr const char* kDeepseek3 = XQ_DEEPSEEK3_HEAD "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kSpark25 = XQ_DEEPSEEK3_HEAD "|[\\r\\n]|\\s+(?!\\S)|\\s+";

// Han ideographs as unicode_cpt_is_han lists them (src/unicode.cpp).
#define XQ_HAN                                                                                 \
  "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}\\x{2A700}-\\x{2B73F}\\x{2B740}-" \
  "\\x{2B81F}\\x{2B820}-\\x{2CEAF}\\x{2CEB0}-\\x{2EBEF}\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}]"
// Kimi K2 as unicode_regex_split_custom_kimi_k2 implements it: Han runs,
// then words of non-Han letters of any case (tokenizer.json's classes also
// hold marks; the splitter does not) with an optional contraction, then the
// Llama 3 tail.
constexpr const char* kKimiK2 = XQ_HAN "+|[^\\r\\n\\p{L}\\p{N}]?(?:(?!" XQ_HAN ")\\p{L})+" XQ_CONTRACTIONS
                                       "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Digit runs in groups of 3 from the right (unicode_regex_split_custom_afmoe,
// used for afmoe and tiny_aya). That splitter emits each group from the end
// of the previous one, so the text before a run joins its first group
// ("ab12345" -> "ab12" "345"); \G anchors each match where the last ended.
// Inside a run (after a digit) the rest is whole groups of 3, taken without
// the lookahead, so that a long run costs linear time as in llama.cpp.
constexpr const char* kDigitsFromRight =
    "\\G(?:(?<=\\p{N})\\p{N}{3}|\\P{N}*(?:\\p{N}{1,2}(?=(?:\\p{N}{3})*(?!\\p{N}))|\\p{N}{3}))";

PreTokenizer sentencepiece_style() {
  PreTokenizer p;
  p.regexes = {kNewlines};
  p.byte_level = false;
  p.escape_whitespace = true;
  return p;
}

PreTokenizer gemma4() {
  PreTokenizer p = sentencepiece_style();
  p.whole_newline_words = true;
  p.add_bos = p.force_add_bos = true;
  return p;
}

// The table names only each family's regexes (and ignore_merges); the other
// members keep their defaults, which GCC's -Wmissing-field-initializers
// reports for every entry.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const std::map<std::string, PreTokenizer, std::less<>>& families() {
  static const std::map<std::string, PreTokenizer, std::less<>> f = {
      {"default", {{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}}},
      {"gpt2", {{kGpt2}}},
      {"llama3", {{kLlama3}}},
      {"jais2",
       {{XQ_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
                         "|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)"
                         "|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"}}},
      {"deepseek-llm",
       {{"[\r\n]",
         "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-"
         "\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-"
         "\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-"
         "\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"
         "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-"
         "\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
         "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-"
         "\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
         "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
         "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}"
         "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-"
         "\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
         "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
         "\\x{1E900}-\\x{1E943}]+",
         "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+", "\\s+$",
         "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-"
         "\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"}}},
      {"deepseek-v3", {{"\\p{N}{1,3}", kHanKana, kDeepseek3}}},
      {"spark2_5", {{"\\p{N}{1,3}", kHanKana, kSpark25, "\\p{N}"}}},
      {"youtu",
       {{"[\\x{AC00}-\\x{D7A3}\\x{3131}-\\x{318E}]+|[\\x{FF01}\\x{2026}\\x{201C}\\x{201D}\\x{2018}\\x{2019}\\x{2014}"
         "\\x{FF1A}\\x{FF1B}\\x{FF0C}\\x{3001}-\\x{303F}\\x{FE30}-\\x{FE4F}]+|[\\x{3105}-\\x{312F}]+|[\\x{4E00}-"
         "\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
         std::string(kCaseBlindWords) + "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        /*ignore_merges=*/true}},
      {"deepseek-coder",
       {{"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
         "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}\\x{2030}-"
         "\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"}}},
      {"falcon", {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"}}},
      {"starcoder", {{"\\p{N}", kGpt2}}},
      {"qwen2", {{kQwen2}}},
      {"qwen35", {{kQwen35}}},
      {"bloom", {{kBloom}}},
      {"viking", {{kBloom, "\\p{N}"}}},
      {"tekken", {{kTekken}, /*ignore_merges=*/true, /*add_bos=*/true}},
      {"chameleon",
       {{"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
         "[\\p{P}!-/:-@\\[-`{-~]", kGpt2},
        false,
        /*add_bos=*/true}},
      {"gpt4o", {{kGpt4o}}},
      {"granite-embed-multi", {{kGraniteEmbMulti}, /*ignore_merges=*/true}},
      {"tiny_aya",
       {{kDigitsFromRight,
         std::string(kCaseBlindWords) + "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
      {"kimi-k2", {{kKimiK2}}},
      // "(?=(\d{3})+(?!\d))" matches only empty strings: its matches are the
      // split points (RegexSplitter keeps empty matches as cuts, as
      // std::regex_iterator does in unicode_regex_split_stl).
      {"superbpe", {{"\\p{N}+", "(?=([0-9]{3})+(?![0-9]))"}}},
      {"bailingmoe",
       {{"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
         "|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}}},
      {"seed-coder",
       {{XQ_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
      {"ufakzeka", {{"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
      {"afmoe",
       {{kDigitsFromRight, "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{8C48}-\\x{FAFF}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}\\x{FF65}-"
         "\\x{FF9F}\\x{2F00}-\\x{2FDF}\\x{E40}-\\x{E7F}\\x{E80}-\\x{EFF}\\x{1780}-\\x{17FF}\\x{1000}-\\x{109F}"
         "\\x{AA60}-\\x{AA7F}\\x{A9E0}-\\x{A9FF}\\x{AC00}-\\x{D7AF}\\x{1100}-\\x{11FF}]+",
         XQ_DEEPSEEK3_HEAD "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
      {"laguna", {{kNewlines, kQwen2}}},
      {"exaone-moe",
       {{XQ_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?"
                         "|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}}},
      // SentencePiece-style BPE on raw UTF-8 (the byte_encode = false lists);
      // gemma4 also takes a newline run that is a token whole and always
      // adds BOS (llama.cpp's "workaround for Gemma 4" in load()).
      {"gemma4", gemma4()},
      {"sarvam-moe", sentencepiece_style()},
      {"minicpm5",
       {{"\\p{N}{1,3}", XQ_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
                                        "|\\s+(?!\\S)|\\s+"},
        /*ignore_merges=*/true}},
  };
  return f;
}
#pragma GCC diagnostic pop

struct Alias {
  const char* family;
  bool ignore_merges = false;  // beyond the family's own
  bool add_bos = false;
  bool no_bos = false;
};

// Every tokenizer.pre name llama.cpp's llama_vocab::impl::load() accepts for
// a BPE vocabulary, with the family (LLAMA_VOCAB_PRE_TYPE_*) it maps to and
// the per-name defaults it sets there (ignore_merges, add_bos, no BOS id).
const std::map<std::string, Alias, std::less<>>& aliases() {
  static const std::map<std::string, Alias, std::less<>> a = {
      {"default", {"default"}},
      // LLAMA3
      {"llama3", {"llama3", true, true}}, {"llama-v3", {"llama3", true, true}}, {"llama-bpe", {"llama3", true, true}},
      {"falcon3", {"llama3", true, true}}, {"falcon-h1", {"llama3", true, true}}, {"pixtral", {"llama3", true, true}},
      {"midm-2.0", {"llama3", true, true}}, {"lfm2", {"llama3", true, true}}, {"jina-v5-nano", {"llama3", true, true}},
      // DBRX, SMAUG, CHATGLM4: the Llama 3 regex
      {"dbrx", {"llama3"}}, {"smaug-bpe", {"llama3"}},
      {"chatglm-bpe", {"llama3", false, false, true}}, {"glm4", {"llama3", true, false, true}},
      {"glm5", {"llama3", true, false, true}},
      {"jais-2", {"jais2"}},
      {"minicpm5", {"minicpm5"}},
      {"deepseek-llm", {"deepseek-llm"}},
      {"deepseek-coder", {"deepseek-coder"}},
      // DEEPSEEK3_LLM, HUNYUAN_DENSE, JOYAI_LLM, HY_V4
      {"deepseek-v3", {"deepseek-v3"}}, {"hunyuan-dense", {"deepseek-v3"}}, {"joyai-llm", {"deepseek-v3"}},
      {"hy_v4", {"deepseek-v3"}},
      {"spark2_5", {"spark2_5"}},
      {"youtu", {"youtu"}},
      {"falcon", {"falcon"}},
      // GPT2, MPT, OLMO, JAIS, TRILLION, GRANITE_DOCLING
      {"gpt-2", {"gpt2"}}, {"phi-2", {"gpt2"}}, {"jina-es", {"gpt2"}}, {"jina-de", {"gpt2"}}, {"gigachat", {"gpt2"}},
      {"jina-v2-es", {"gpt2"}}, {"jina-v2-de", {"gpt2"}}, {"a.x-4.0", {"gpt2"}}, {"mellum", {"gpt2"}},
      {"modern-bert", {"gpt2"}}, {"jina-v1-en", {"gpt2"}}, {"jina-v2-code", {"gpt2"}}, {"roberta-bpe", {"gpt2"}},
      {"exaone4", {"gpt2"}}, {"mpt", {"gpt2"}}, {"olmo", {"gpt2"}}, {"jais", {"gpt2"}}, {"trillion", {"gpt2"}},
      {"granite-docling", {"gpt2"}},
      // STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE, MINERVA, MELLUM2
      {"starcoder", {"starcoder"}}, {"refact", {"starcoder"}}, {"command-r", {"starcoder"}}, {"smollm", {"starcoder"}},
      {"codeshell", {"starcoder"}}, {"exaone", {"starcoder"}}, {"minerva-7b", {"starcoder"}}, {"mellum2", {"starcoder"}},
      // QWEN2, STABLELM2, HUNYUAN, SOLAR_OPEN, GROK_2
      {"qwen2", {"qwen2"}}, {"deepseek-r1-qwen", {"qwen2"}}, {"kormo", {"qwen2"}}, {"f2llmv2", {"qwen2"}},
      {"megrez", {"qwen2"}}, {"stablelm2", {"qwen2"}}, {"hunyuan", {"qwen2"}}, {"solar-open", {"qwen2"}},
      {"grok-2", {"qwen2"}},
      {"qwen35", {"qwen35"}},
      // PORO, BLOOM, GPT3_FINNISH
      {"poro-chat", {"bloom"}}, {"bloom", {"bloom"}}, {"gpt3-finnish", {"bloom"}},
      {"viking", {"viking"}},
      {"tekken", {"tekken"}},
      {"chameleon", {"chameleon"}},
      // GPT4O, MINIMAX_M2
      {"gpt-4o", {"gpt4o"}}, {"llama4", {"gpt4o"}}, {"kanana2", {"gpt4o"}}, {"talkie", {"gpt4o"}},
      {"minimax-m2", {"gpt4o"}},
      {"granite-embed-multi-97m", {"granite-embed-multi"}},
      {"tiny_aya", {"tiny_aya"}}, {"cohere2moe", {"tiny_aya"}},
      {"superbpe", {"superbpe"}},
      {"bailingmoe", {"bailingmoe"}}, {"bailingmoe2", {"bailingmoe"}}, {"llada-moe", {"bailingmoe"}},
      {"seed-coder", {"seed-coder"}},
      {"kimi-k2", {"kimi-k2"}},
      {"ufakzeka", {"ufakzeka"}},
      {"afmoe", {"afmoe"}},
      {"laguna", {"laguna"}},
      {"exaone-moe", {"exaone-moe"}},
      // GEMMA4, SARVAM_MOE
      {"gemma4", {"gemma4"}}, {"granite-embed-multi-311m", {"gemma4"}},
      {"sarvam-moe", {"sarvam-moe"}},
  };
  return a;
}

// Names llama.cpp knows whose tokenizers are not BPE over a regex pre-split
// (jina-embeddings-v2-base-zh's whitespace words with a BERT-style
// normalizer): refused by name.
constexpr const char* kNotByteLevel[] = {"whitespace"};

}  // namespace

PreTokenizerLookup find_pre_tokenizer(std::string_view name) {
  PreTokenizerLookup r;
  if (std::find(std::begin(kNotByteLevel), std::end(kNotByteLevel), name) != std::end(kNotByteLevel)) {
    r.status = PreTokenizerLookup::kNotByteLevel;
    return r;
  }
  auto a = aliases().find(name);
  if (a == aliases().end()) {
    r.status = PreTokenizerLookup::kUnknown;
    return r;
  }
  r.pre = families().at(a->second.family);
  r.pre.family = a->second.family;
  r.pre.ignore_merges = r.pre.ignore_merges || a->second.ignore_merges;
  r.pre.add_bos = r.pre.add_bos || a->second.add_bos;
  r.pre.no_bos = a->second.no_bos;
  r.status = PreTokenizerLookup::kFound;
  return r;
}

std::vector<std::string> pre_tokenizer_names() {
  std::vector<std::string> names;
  for (const auto& [name, alias] : aliases()) names.push_back(name);
  return names;
}

}  // namespace xquant::tok
