// test_tokenizer.cpp: the tokenizers against llama.cpp's own test vectors
// (tests/test-tokenizer-0: inputs split on "\n__ggml_vocab_test__\n", ids
// without BOS, special tokens not parsed), for both vocabulary files, one
// test per file with a per-line failure message; decode(encode(x)) == x;
// special-token parsing; and a byte-level BPE built from a HF tokenizer.json.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "checkpoint/checkpoint.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace {

const std::string kDir = std::string(XQUANT_SHARED_DIR) + "/data/tokenizer-tests/";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// Exactly test-tokenizer-0's read_tests(), for `dir` + `vocab` (.inp/.out).
std::vector<Case> read_cases(const std::string& vocab, const std::string& dir = kDir) {
  const std::string raw = slurp(dir + vocab + ".inp");
  std::vector<std::string> inputs;
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < raw.size();) {
    size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream out(dir + vocab + ".out");
  std::vector<Case> cases;
  size_t i = 0;
  for (std::string line; std::getline(out, line); ++i) {
    Case c;
    c.text = i < inputs.size() ? inputs[i] : std::string();
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  EXPECT_EQ(inputs.size(), cases.size()) << vocab << ": .inp and .out disagree on the number of tests";
  return cases;
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

xquant::Runtime& runtime() {
  static xquant::Runtime rt(xquant::RuntimeOptions{});
  return rt;
}

// Encodes every input of `vocab`'s vectors (no BOS, special texts not
// parsed, as test-tokenizer-0 does) and reports each line that differs.
void expect_vectors_reproduced(const std::string& dir, const std::string& vocab) {
  auto ckpt = xquant::Checkpoint::open(runtime(), dir + vocab);
  EXPECT_TRUE(ckpt->tensors().empty());  // vocabulary-only file
  auto tok = xquant::Tokenizer::from_config(ckpt->config());
  const auto cases = read_cases(vocab, dir);
  ASSERT_GT(cases.size(), 30u);
  size_t passed = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto got = tok->encode(cases[i].text, /*add_bos=*/false, /*parse_special=*/false);
    if (got == cases[i].ids) ++passed;
    else
      ADD_FAILURE() << vocab << " line " << i + 1 << ": input '" << cases[i].text << "'\n  expected: " << ids_text(cases[i].ids)
                    << "\n  got:      " << ids_text(got);
  }
  std::printf("%s: %zu/%zu vectors passed\n", vocab.c_str(), passed, cases.size());
  EXPECT_EQ(passed, cases.size());
  // Byte-level and SentencePiece-style BPE decode losslessly.
  if (tok->kind() == xquant::Tokenizer::Kind::Bpe) {
    for (const Case& c : cases) EXPECT_EQ(tok->decode(c.ids), c.text) << vocab;
  }
}

class Vectors : public ::testing::TestWithParam<std::string> {};

TEST_P(Vectors, ReproducesLlamaCpp) { expect_vectors_reproduced(kDir, GetParam()); }

TEST_P(Vectors, DecodeInvertsEncode) {
  const std::string vocab = GetParam();
  auto ckpt = xquant::Checkpoint::open(runtime(), kDir + vocab);
  auto tok = xquant::Tokenizer::from_config(ckpt->config());
  for (const auto& c : read_cases(vocab)) {
    // SPM cannot reproduce a leading space it strips on decode only when
    // the text starts with one: llama.cpp's decoder behaves the same way.
    EXPECT_EQ(tok->decode(tok->encode(c.text)), c.text) << vocab << ": '" << c.text << "'";
    EXPECT_EQ(tok->decode(c.ids), c.text) << vocab << ": expected ids of '" << c.text << "'";
  }
}

TEST_P(Vectors, BosAndSpecialTokens) {
  const std::string vocab = GetParam();
  auto ckpt = xquant::Checkpoint::open(runtime(), kDir + vocab);
  auto tok = xquant::Tokenizer::from_config(ckpt->config());
  ASSERT_GE(tok->bos_id(), 0);
  const auto with = tok->encode("Hello world", true);
  const auto without = tok->encode("Hello world", false);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], tok->bos_id());
  EXPECT_TRUE(std::equal(without.begin(), without.end(), with.begin() + 1));
  // With parse_special the EOS text becomes the EOS id; without, it is text.
  const std::string eos = tok->token_text(tok->eos_id());
  const auto parsed = tok->encode("Hi" + eos, false, true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed.back(), tok->eos_id());
  const auto plain = tok->encode("Hi" + eos, false, false);
  EXPECT_NE(plain.back(), tok->eos_id());
  EXPECT_TRUE(tok->is_eog(tok->eos_id()));
  EXPECT_EQ(tok->token_to_piece(tok->eos_id()), "");
  EXPECT_EQ(tok->token_to_piece(tok->eos_id(), true), eos);
  EXPECT_THROW(tok->token_to_piece(tok->vocab_size()), xquant::Error);
}

TEST_P(Vectors, RoundTripsRealText) {
  const std::string vocab = GetParam();
  auto ckpt = xquant::Checkpoint::open(runtime(), kDir + vocab);
  auto tok = xquant::Tokenizer::from_config(ckpt->config());
  std::string text = slurp(std::string(XQUANT_SHARED_DIR) + "/data/wikitext-2-raw/wiki.test.raw").substr(0, 200000);
  text.resize(text.rfind('\n') + 1);  // whole lines only (never split a UTF-8 sequence)
  const auto ids = tok->encode(text);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_LT(ids.size(), text.size() / 2);
  EXPECT_EQ(tok->decode(ids), text);
  std::string pieces;
  for (int32_t id : ids) pieces += tok->token_to_piece(id);
  // Piece by piece equals the text except for SPM's prepended space.
  EXPECT_EQ(tok->kind() == xquant::Tokenizer::Kind::Spm ? pieces.substr(1) : pieces, text);
}

INSTANTIATE_TEST_SUITE_P(Vocabs, Vectors, ::testing::Values("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"),
                         [](const auto& info) { return info.param.find("spm") != std::string::npos ? std::string("llama_spm") : std::string("gpt2"); });

// llama.cpp's vectors for the other vocabularies of its models/ folder
// (BPE with the llama-bpe, qwen2, qwen35, deepseek-llm, deepseek-coder,
// falcon, mpt, starcoder, refact and command-r pre-tokenizers, Gemma 4's
// SentencePiece-style BPE, and the phi-3 SentencePiece vocabulary), fetched by tests/tokenizer/fetch-llama-vocabs.sh
// into the folder $XQUANT_LLAMA_VOCABS names.
TEST(LlamaCppVocabularies, ReproduceTheirVectors) {
  const char* dir = std::getenv("XQUANT_LLAMA_VOCABS");
  if (!dir || !*dir) GTEST_SKIP() << "XQUANT_LLAMA_VOCABS is not set (run tests/tokenizer/fetch-llama-vocabs.sh)";
  for (const char* vocab : {"command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2", "llama-bpe",
                            "llama-spm", "mpt", "phi-3", "qwen2", "qwen35", "refact", "starcoder"}) {
    SCOPED_TRACE(vocab);
    expect_vectors_reproduced(std::string(dir) + "/", std::string("ggml-vocab-") + vocab + ".gguf");
  }
}

TEST(Tokenizer, SpmByteFallbackAndSpaces) {
  auto ckpt = xquant::Checkpoint::open(runtime(), kDir + "ggml-vocab-llama-spm.gguf");
  auto tok = xquant::Tokenizer::from_config(ckpt->config());
  EXPECT_EQ(tok->kind(), xquant::Tokenizer::Kind::Spm);
  // U+1F999 (llama) has no token: four <0xXX> byte tokens (243 162 169 156 in the vectors).
  auto ids = tok->encode("\xf0\x9f\xa6\x99");
  ASSERT_EQ(ids.size(), 5u);  // "▁" + 4 bytes
  EXPECT_EQ(tok->token_text(ids[1]), "<0xF0>");
  EXPECT_EQ(tok->token_to_piece(ids[1]), "\xf0");
  EXPECT_EQ(tok->decode(ids), "\xf0\x9f\xa6\x99");
}

// Invalid UTF-8 reaches byte-level BPE as llama.cpp's unicode_cpts_from_utf8
// reads it: a stray byte is U+FFFD, an overlong form its code point.
TEST(Tokenizer, BpeReadsInvalidUtf8AsLlamaCpp) {
  auto ckpt = xquant::Checkpoint::open(runtime(), kDir + "ggml-vocab-gpt-2.gguf");
  auto tok = xquant::Tokenizer::from_config(ckpt->config());
  EXPECT_EQ(tok->encode("a\xff b"), tok->encode("a\xef\xbf\xbd b"));
  EXPECT_EQ(tok->encode("x\xe4\xb8"), tok->encode("x\xef\xbf\xbd\xef\xbf\xbd"));  // truncated: one U+FFFD per byte
  EXPECT_EQ(tok->encode(std::string("\xc0\x80", 2)), tok->encode(std::string(1, '\0')));
  EXPECT_EQ(tok->encode("\xf7\xbf\xbf\xbf"), tok->encode("\xef\xbf\xbd"));  // past U+10FFFF
}

// A tiny byte-level BPE from tokenizer.json: vocab of bytes for "abc " plus
// merges, checked by hand.
TEST(Tokenizer, HuggingFaceJsonBpe) {
  nlohmann::json j;
  j["model"] = {{"type", "BPE"},
                {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"\xc4\xa0", 3}, {"ab", 4}, {"abc", 5}, {"\xc4\xa0" "a", 6}}},
                {"merges", {"a b", "ab c", "\xc4\xa0 a"}}};
  j["added_tokens"] = {{{"id", 7}, {"content", "<|end|>"}, {"special", true}}};
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  xquant::Kv cfg;
  cfg.set("tokenizer.huggingface_json", xquant::KvValue::string(j.dump()));
  cfg.set("tokenizer.eos_token_id", xquant::KvValue::integer(7));
  auto tok = xquant::Tokenizer::from_config(cfg);
  EXPECT_EQ(tok->kind(), xquant::Tokenizer::Kind::Bpe);
  // "abc ab" -> "abc" | " ab": "a b" (rank 0) beats "Ġ a" (rank 2) -> [abc] [Ġ] [ab]
  EXPECT_EQ(tok->encode("abc ab"), (std::vector<int32_t>{5, 3, 4}));
  // " ac": no "a c" merge, so "Ġ a" applies -> [Ġa] [c]
  EXPECT_EQ(tok->encode(" ac"), (std::vector<int32_t>{6, 2}));
  EXPECT_EQ(tok->decode(tok->encode("abc ab")), "abc ab");
  EXPECT_EQ(tok->encode("abc<|end|>", false, true), (std::vector<int32_t>{5, 7}));
  EXPECT_TRUE(tok->is_eog(7));
}

// tokenizer.json pre-tokenizers that do not split the way a regex list does,
// and malformed structure: clear errors, not a different tokenization or a
// crash.
TEST(Tokenizer, HuggingFaceJsonErrorsAreClear) {
  auto build = [](const nlohmann::json& j) {
    xquant::Kv cfg;
    cfg.set("tokenizer.huggingface_json", xquant::KvValue::string(j.dump()));
    return xquant::Tokenizer::from_config(cfg);
  };
  auto status_of = [&](const nlohmann::json& j, const std::string& expect_in_message) {
    try {
      build(j);
    } catch (const xquant::Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect_in_message), std::string::npos) << e.what();
      return e.status();
    }
    ADD_FAILURE() << "no error for " << j.dump();
    return XQ_OK;
  };
  nlohmann::json ok;
  ok["model"] = {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", nlohmann::json::array()}};
  ok["decoder"] = {{"type", "ByteLevel"}};
  EXPECT_NO_THROW(build(ok));
  nlohmann::json j = ok;
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Removed"}};
  EXPECT_EQ(status_of(j, "behavior 'Removed'"), XQ_ERR_UNSUPPORTED);
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}, {"invert", true}};
  EXPECT_EQ(status_of(j, "invert"), XQ_ERR_UNSUPPORTED);
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  EXPECT_EQ(status_of(j, "'Metaspace'"), XQ_ERR_UNSUPPORTED);
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
  EXPECT_EQ(status_of(j, "add_prefix_space"), XQ_ERR_UNSUPPORTED);
  j = ok;
  j["model"]["vocab"] = {{"a", "zero"}};
  EXPECT_EQ(status_of(j, "is not a non-negative integer"), XQ_ERR_MALFORMED);
  j["model"]["vocab"] = {{"a", 4000000000000}};
  EXPECT_EQ(status_of(j, "too large"), XQ_ERR_MALFORMED);
  EXPECT_EQ(status_of(nlohmann::json::array({1, 2}), "not a JSON object"), XQ_ERR_MALFORMED);
}

TEST(Tokenizer, MissingVocabularyIsAClearError) {
  xquant::Kv cfg;
  try {
    xquant::Tokenizer::from_config(cfg);
    FAIL() << "expected an error";
  } catch (const xquant::Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos);
  }
  cfg.set("tokenizer.model", xquant::KvValue::string("gpt2"));
  cfg.set("tokenizer.tokens", xquant::KvValue::strings({"a", "b"}));
  cfg.set("tokenizer.pre", xquant::KvValue::string("no-such-pre"));
  EXPECT_THROW(xquant::Tokenizer::from_config(cfg), xquant::Error);
}

}  // namespace
