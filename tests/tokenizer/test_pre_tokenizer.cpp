// test_pre_tokenizer.cpp: the byte-level BPE pre-tokenizers against
// llama.cpp itself. pre_tokenizer_splits.json (written by
// tools/gen-pre-tokenizer-splits.py from llama.cpp's own sources) holds every
// tokenizer.pre name llama.cpp's vocabulary loader accepts, with the
// LLAMA_VOCAB_PRE_TYPE_* it maps to and the defaults it sets, and what
// llama.cpp's unicode_regex_split makes of test strings (digit groups,
// contractions, CJK, whitespace runs, newlines, punctuation, marks, non-ASCII
// whitespace) with each type's regex list. Plus the PCRE2 adaptations
// RegexSplitter makes, the errors for names we do not support, and the HF
// tokenizer.json path with the Split regexes those families ship.
#include "core/error.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "engine/tokenizer/tokenizer_impl.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>

namespace {

using xquant::tok::find_pre_tokenizer;
using xquant::tok::PreTokenizerLookup;
using xquant::tok::RegexSplitter;

const nlohmann::json& upstream() {
  static const nlohmann::json j = nlohmann::json::parse(
      xquant::test::read_file(std::string(XQUANT_SOURCE_DIR) + "/tests/tokenizer/pre_tokenizer_splits.json"));
  return j;
}

// llama.cpp types that are not BPE over a regex split (whitespace words for
// a normalizing tokenizer): refused by name.
const std::set<std::string> kNotByteLevel = {"LLAMA_VOCAB_PRE_TYPE_WHITESPACE"};

std::vector<std::string> split(const RegexSplitter& s, const std::string& text) {
  std::vector<std::string> out;
  for (std::string_view p : s.split(text)) out.emplace_back(p);
  return out;
}

TEST(PreTokenizer, EveryLlamaCppNameResolvesWithItsDefaults) {
  size_t found = 0;
  for (const auto& [name, info] : upstream()["names"].items()) {
    SCOPED_TRACE(name);
    const PreTokenizerLookup r = find_pre_tokenizer(name);
    if (kNotByteLevel.count(info["type"].get<std::string>())) {
      EXPECT_EQ(r.status, PreTokenizerLookup::kNotByteLevel);
      continue;
    }
    ASSERT_EQ(r.status, PreTokenizerLookup::kFound);
    EXPECT_EQ(r.pre.ignore_merges, info["ignore_merges"].get<bool>());
    // llama.cpp turns add_bos on for every GEMMA4 vocabulary after reading
    // the file ("workaround for Gemma 4" in llama_vocab::impl::load()).
    const bool gemma4 = info["type"] == "LLAMA_VOCAB_PRE_TYPE_GEMMA4";
    EXPECT_EQ(r.pre.add_bos, info["add_bos"].get<bool>() || gemma4);
    EXPECT_EQ(r.pre.force_add_bos, gemma4);
    EXPECT_EQ(r.pre.no_bos, info["no_bos"].get<bool>());
    ++found;
  }
  // No name of ours that llama.cpp does not know.
  EXPECT_EQ(xquant::tok::pre_tokenizer_names().size(), found);
  EXPECT_GE(found, 90u);
}

TEST(PreTokenizer, NamesOfOneLlamaCppTypeShareOneRegexList) {
  std::map<std::string, std::vector<std::string>> regexes_of_type;
  for (const auto& [name, info] : upstream()["names"].items()) {
    const PreTokenizerLookup r = find_pre_tokenizer(name);
    if (r.status != PreTokenizerLookup::kFound) continue;
    auto [it, first] = regexes_of_type.emplace(info["type"].get<std::string>(), r.pre.regexes);
    if (!first) {
      EXPECT_EQ(it->second, r.pre.regexes) << name << " (" << it->first << ")";
    }
  }
}

TEST(PreTokenizer, EachRegexListSplitsLikeLlamaCpp) {
  const auto& texts = upstream()["texts"];
  std::set<std::string> checked;
  for (const auto& [name, info] : upstream()["names"].items()) {
    const std::string type = info["type"].get<std::string>();
    if (kNotByteLevel.count(type) || !checked.insert(type).second) continue;
    const RegexSplitter splitter(find_pre_tokenizer(name).pre.regexes);
    const auto& expected = upstream()["splits"][type];
    ASSERT_EQ(expected.size(), texts.size()) << type;
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::string text = texts[i].get<std::string>();
      EXPECT_EQ(split(splitter, text), expected[i].get<std::vector<std::string>>())
          << name << " (" << type << ") on '" << text << "'";
    }
  }
  EXPECT_GE(checked.size(), 56u);
}

// The llama.cpp behaviours PCRE2 does not have by itself.
TEST(RegexSplitter, EmptyMatchesCutAsStdRegexIteratorDoes) {
  // superbpe's second regex matches only empty strings, before each group
  // of three digits that ends the run.
  const RegexSplitter s({"(?=([0-9]{3})+(?![0-9]))"});
  EXPECT_EQ(split(s, "1234567"), (std::vector<std::string>{"1", "234", "567"}));
  EXPECT_EQ(split(s, "123456"), (std::vector<std::string>{"123", "456"}));
  EXPECT_EQ(split(s, "12"), (std::vector<std::string>{"12"}));
}

TEST(RegexSplitter, WhitespaceIsUnicodeWhiteSpace) {
  // U+180E is \s for PCRE2 10.42 (older Unicode) but not White_Space.
  EXPECT_EQ(split(RegexSplitter({"\\s+"}), "a\xe1\xa0\x8e" "b"), (std::vector<std::string>{"a\xe1\xa0\x8e" "b"}));
  EXPECT_EQ(split(RegexSplitter({"[^\\s]+"}), "a\xe3\x80\x80" "b"),
            (std::vector<std::string>{"a", "\xe3\x80\x80", "b"}));  // U+3000 is whitespace
  EXPECT_EQ(split(RegexSplitter({"\\S+"}), "a\xc2\x85" "b"), (std::vector<std::string>{"a", "\xc2\x85", "b"}));  // NEL
}

TEST(RegexSplitter, DollarMatchesOnlyAtTheEnd) {
  // ECMAScript '$', as deepseek-llm's "\s+$" runs in llama.cpp.
  EXPECT_EQ(split(RegexSplitter({"a$"}), "a\n"), (std::vector<std::string>{"a\n"}));
  EXPECT_EQ(split(RegexSplitter({"\\s+$"}), "a \n"), (std::vector<std::string>{"a", " \n"}));
}

// Long runs outgrow PCRE2's default 32 KiB JIT stack with the lookahead-heavy
// lists; they must still split, not turn into one unsplit gap.
TEST(RegexSplitter, LongRunsSplit) {
  const std::string letters(50000, 'A');
  for (const char* name : {"gpt-4o", "tekken", "kimi-k2", "exaone-moe"}) {
    const RegexSplitter s(find_pre_tokenizer(name).pre.regexes);
    EXPECT_EQ(split(s, letters + "1"), (std::vector<std::string>{letters, "1"})) << name;
  }
  // afmoe's digit groups: "x" joins the first group (50000 = 3 * 16666 + 2).
  const RegexSplitter digits({find_pre_tokenizer("afmoe").pre.regexes.at(0)});
  const auto pieces = split(digits, "x" + std::string(50000, '1'));
  ASSERT_EQ(pieces.size(), 16667u);
  EXPECT_EQ(pieces.front(), "x11");
  EXPECT_EQ(pieces.back(), "111");
}

TEST(RegexSplitter, MatchFailureIsAnErrorNotAGap) {
  // Catastrophic backtracking reaches PCRE2's match limit.
  const RegexSplitter s({"(?:a|aa)+$"});
  try {
    s.split(std::string(60, 'a') + "b");
    FAIL() << "expected an error";
  } catch (const xquant::Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED);
    EXPECT_NE(std::string(e.what()).find("regex 1 of 1"), std::string::npos) << e.what();
  }
}

TEST(RegexSplitter, BadRegexIsAClearError) {
  try {
    RegexSplitter({"(unclosed"});
    FAIL() << "expected an error";
  } catch (const xquant::Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("(unclosed"), std::string::npos);
  }
}

// A "gpt2" vocabulary of the 256 byte symbols naming `pre`.
xquant::Kv byte_vocab(const std::string& pre) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));  // texts do not matter here
  xquant::Kv cfg;
  cfg.set("tokenizer.model", xquant::KvValue::string("gpt2"));
  cfg.set("tokenizer.tokens", xquant::KvValue::strings(tokens));
  cfg.set("tokenizer.pre", xquant::KvValue::string(pre));
  return cfg;
}

TEST(PreTokenizer, UnknownNameIsAClearError) {
  for (const char* name : {"no-such-pre", "gpt2", "whitespace"}) {
    try {
      xquant::Tokenizer::from_config(byte_vocab(name));
      FAIL() << "expected an error for " << name;
    } catch (const xquant::Error& e) {
      EXPECT_EQ(e.status(), XQ_ERR_UNSUPPORTED) << name;
      EXPECT_NE(std::string(e.what()).find(std::string("'") + name + "'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("tokenizer.pre"), std::string::npos) << e.what();
    }
  }
}

TEST(PreTokenizer, SetsLlamaCppVocabularyDefaults) {
  // llama-bpe: add BOS by default (llama.cpp's LLAMA3 branch); gpt-2: not.
  EXPECT_TRUE(xquant::Tokenizer::from_config(byte_vocab("llama-bpe"))->add_bos_by_default());
  EXPECT_FALSE(xquant::Tokenizer::from_config(byte_vocab("gpt-2"))->add_bos_by_default());
  // A key in the file wins over the default.
  auto cfg = byte_vocab("tekken");
  cfg.set("tokenizer.add_bos_token", xquant::KvValue::boolean(false));
  EXPECT_FALSE(xquant::Tokenizer::from_config(cfg)->add_bos_by_default());
  // chatglm-bpe has no BOS id unless the file names one (BPE's default is 11).
  EXPECT_EQ(xquant::Tokenizer::from_config(byte_vocab("gpt-2"))->bos_id(), 11);
  EXPECT_EQ(xquant::Tokenizer::from_config(byte_vocab("chatglm-bpe"))->bos_id(), -1);
  // An empty name is llama.cpp's "default".
  EXPECT_NO_THROW(xquant::Tokenizer::from_config(byte_vocab("")));
}

// A byte-level BPE tokenizer.json whose vocabulary holds exactly the pieces
// llama.cpp makes of `text` (plus the 256 byte symbols), with ignore_merges,
// so that each piece of our split that llama.cpp also made is one token.
std::unique_ptr<xquant::Tokenizer> hf_with_pieces(const nlohmann::json& pre_tokenizer, const std::vector<std::string>& pieces,
                                                  std::map<std::string, int>* ids) {
  nlohmann::json vocab = nlohmann::json::object();
  int next = 0;
  auto add = [&](const std::string& symbolized) {
    if (!vocab.contains(symbolized)) vocab[symbolized] = next++;
    return vocab[symbolized].get<int>();
  };
  for (int b = 0; b < 256; ++b) add(xquant::tok::byte_to_unicode(static_cast<uint8_t>(b)));
  for (const std::string& p : pieces) {
    std::string sym;
    for (unsigned char c : p) sym += xquant::tok::byte_to_unicode(c);
    (*ids)[p] = add(sym);
  }
  nlohmann::json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}, {"ignore_merges", true}};
  j["pre_tokenizer"] = pre_tokenizer;
  j["decoder"] = {{"type", "ByteLevel"}};
  xquant::Kv cfg;
  cfg.set("tokenizer.huggingface_json", xquant::KvValue::string(j.dump()));
  return xquant::Tokenizer::from_config(cfg);
}

// The HF path with the Split regexes these families' tokenizer.json files
// carry (quoted in llama.cpp's llm_tokenizer_bpe constructor as "original
// regex from tokenizer.json"): (?i:...) and possessive quantifiers are
// PCRE2 syntax, so they run as written and split as llama.cpp's adaptations.
TEST(PreTokenizer, HuggingFaceSplitRegexesSplitLikeLlamaCpp) {
  const std::map<std::string, std::string> original = {
      {"LLAMA_VOCAB_PRE_TYPE_LLAMA3",
       "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
       "\\s+(?!\\S)|\\s+"},
      {"LLAMA_VOCAB_PRE_TYPE_QWEN2",
       "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
       "\\s+(?!\\S)|\\s+"},
      {"LLAMA_VOCAB_PRE_TYPE_BAILINGMOE",
       "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
      {"LLAMA_VOCAB_PRE_TYPE_EXAONE_MOE",
       "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| "
       "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
  };
  const auto& texts = upstream()["texts"];
  for (const auto& [type, regex] : original) {
    const nlohmann::json pre = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto pieces = upstream()["splits"][type][i].get<std::vector<std::string>>();
      std::map<std::string, int> ids;
      auto tok = hf_with_pieces(pre, pieces, &ids);
      std::vector<int32_t> expected;
      for (const std::string& p : pieces) expected.push_back(ids.at(p));
      EXPECT_EQ(tok->encode(texts[i].get<std::string>()), expected) << type << " on '" << texts[i].get<std::string>() << "'";
    }
  }
}

// GPT-2's tokenizer.json pre-tokenizes with ByteLevel{use_regex: true}.
TEST(PreTokenizer, HuggingFaceByteLevelRegexIsGpt2s) {
  const auto& texts = upstream()["texts"];
  const nlohmann::json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto pieces = upstream()["splits"]["LLAMA_VOCAB_PRE_TYPE_GPT2"][i].get<std::vector<std::string>>();
    std::map<std::string, int> ids;
    auto tok = hf_with_pieces(pre, pieces, &ids);
    std::vector<int32_t> expected;
    for (const std::string& p : pieces) expected.push_back(ids.at(p));
    EXPECT_EQ(tok->encode(texts[i].get<std::string>()), expected) << texts[i].get<std::string>();
  }
}

}  // namespace
