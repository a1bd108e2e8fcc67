// test_tokenizer_synth.cpp: the tokenizer.json that <xquant/sdk/hf_tokenizer.hpp>
// synthesises from a GGUF vocabulary tokenizes exactly as the GGUF does.
// Both sides run on the engine's tokenizer: Tokenizer::from_config on the
// GGUF's canonical config, and on a config holding only the synthesised
// tokenizer.json (as a compressed-tensors checkpoint's loader gives it),
// over llama.cpp's test vectors (tests/test-tokenizer-0 inputs) and ~200 KB
// of wikitext-2 and TinyStories text, with and without BOS and special-token
// parsing. tests/interop/tokenizer_interop.sh runs HF `tokenizers` on the
// same files. A compressed-tensors checkpoint quantized from a GGUF carries
// the files and runs without --tokenizer.
#include "core/kv.hpp"
#include "core/runtime.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "checkpoint/checkpoint.hpp"

#include "gguf_vocabulary.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;
const std::string kShared = XQUANT_SHARED_DIR;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

xquant::Runtime& runtime() {
  static xquant::Runtime rt(xquant::RuntimeOptions{});
  return rt;
}

// test-tokenizer-0's inputs: the .inp file split on its separator.
std::vector<std::string> vector_inputs(const std::string& inp) {
  const std::string raw = slurp(inp);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    out.push_back(raw.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + sep.size();
  }
  return out;
}

// The first `bytes` of a text file cut into pieces of about 2 KB at line
// ends (each piece is tokenized on its own, newlines included).
std::vector<std::string> text_pieces(const std::string& path, size_t bytes) {
  const std::string all = slurp(path).substr(0, bytes);
  std::vector<std::string> out;
  for (size_t pos = 0; pos < all.size();) {
    size_t end = all.find('\n', std::min(all.size(), pos + 2048));
    end = end == std::string::npos ? all.size() : end + 1;
    out.push_back(all.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

std::vector<std::string> corpus() {
  auto a = text_pieces(kShared + "/data/wikitext-2-raw/wiki.test.raw", 100 * 1024);
  auto b = text_pieces(kShared + "/data/tinystories/tinystories_val.subset.txt", 100 * 1024);
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The engine's tokenizer over only the synthesised tokenizer.json, with the
// BOS/EOS ids the synthesised config.json carries.
std::unique_ptr<xquant::Tokenizer> from_synthesized(const std::string& gguf) {
  const auto v = xquant::gguf::read_gguf_vocabulary(gguf);
  xquant::Kv kv;
  kv.set("tokenizer.huggingface_json", xquant::KvValue::string(xquant::sdk::hf_tokenizer::tokenizer_json(v).dump()));
  if (v.bos >= 0) kv.set("bos_token_id", xquant::KvValue::integer(v.bos));
  if (v.eos >= 0) kv.set("eos_token_id", xquant::KvValue::integer(v.eos));
  return xquant::Tokenizer::from_config(kv);
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

// Every text, encoded every way, gives the same ids through both tokenizers.
void expect_same_ids(const std::string& gguf, const std::vector<std::string>& texts) {
  auto ckpt = xquant::Checkpoint::open(runtime(), gguf);
  auto ref = xquant::Tokenizer::from_config(ckpt->config());
  auto syn = from_synthesized(gguf);
  EXPECT_EQ(syn->kind(), ref->kind());
  EXPECT_EQ(syn->vocab_size(), ref->vocab_size());
  EXPECT_EQ(syn->bos_id(), ref->bos_id());
  EXPECT_EQ(syn->eos_id(), ref->eos_id());
  EXPECT_EQ(syn->add_bos_by_default(), ref->add_bos_by_default());
  size_t same = 0, total = 0, tokens = 0;
  for (const std::string& t : texts)
    for (bool special : {false, true}) {
      const auto want = ref->encode(t, ref->add_bos_by_default(), special);
      const auto got = syn->encode(t, syn->add_bos_by_default(), special);
      ++total;
      tokens += want.size();
      if (got == want) {
        ++same;
      } else if (total - same <= 5) {
        ADD_FAILURE() << gguf << ": '" << t.substr(0, 200) << "' (special " << special << ")\n  gguf: "
                      << ids_text(want) << "\n  json: " << ids_text(got);
      }
      if (got == want) {
        EXPECT_EQ(syn->decode(got), ref->decode(want)) << gguf << ": '" << t.substr(0, 200) << "'";
      }
    }
  std::printf("%s: %zu/%zu encodings equal (%zu tokens)\n", fs::path(gguf).filename().c_str(), same, total, tokens);
  EXPECT_EQ(same, total);
}

class SynthVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(SynthVectors, TokenizesLikeTheGguf) {
  const std::string gguf = kShared + "/data/tokenizer-tests/" + GetParam();
  auto texts = vector_inputs(gguf + ".inp");
  ASSERT_GT(texts.size(), 30u);
  auto more = corpus();
  ASSERT_GT(more.size(), 50u);
  texts.insert(texts.end(), more.begin(), more.end());
  expect_same_ids(gguf, texts);
}

INSTANTIATE_TEST_SUITE_P(LlamaCppVocabs, SynthVectors,
                         ::testing::Values("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"));

TEST(TokenizerSynth, Stories260KTokenizesLikeTheGguf) {
  expect_same_ids(kShared + "/models/stories260K/stories260K.gguf", corpus());
}

// SmolLM2's vocabulary (BPE, pre-tokenizer "smollm"), when fetched.
TEST(TokenizerSynth, SmolLM2TokenizesLikeTheGguf) {
  const char* path = std::getenv("XQUANT_SMOLLM2_GGUF");
  if (!path || !fs::exists(path)) GTEST_SKIP() << "set XQUANT_SMOLLM2_GGUF (scripts/fetch-smollm2.sh)";
  expect_same_ids(path, corpus());
}

// Every vocabulary fetched by tests/tokenizer/fetch-llama-vocabs.sh whose
// tokenizer.ggml.pre has a Hugging Face pre-tokenizer here.
TEST(TokenizerSynth, FetchedLlamaCppVocabs) {
  const char* dir = std::getenv("XQUANT_LLAMA_VOCABS");
  if (!dir || !*dir) GTEST_SKIP() << "XQUANT_LLAMA_VOCABS is not set (run tests/tokenizer/fetch-llama-vocabs.sh)";
  for (const char* name : {"ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf", "ggml-vocab-starcoder.gguf"}) {
    const std::string gguf = std::string(dir) + "/" + name;
    if (!fs::exists(gguf)) {
      ADD_FAILURE() << gguf << " is missing";
      continue;
    }
    expect_same_ids(gguf, vector_inputs(gguf + ".inp"));
  }
}

TEST(TokenizerSynth, SpmFileShape) {
  const auto v = xquant::gguf::read_gguf_vocabulary(kShared + "/models/stories260K/stories260K.gguf");
  const auto j = xquant::sdk::hf_tokenizer::tokenizer_json(v);
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_TRUE(j["model"]["byte_fallback"].get<bool>());
  EXPECT_EQ(j["normalizer"]["normalizers"][0]["type"], "Prepend");
  EXPECT_EQ(j["post_processor"]["single"][0]["SpecialToken"]["id"], "<s>");
  const auto c = xquant::sdk::hf_tokenizer::tokenizer_config(v);
  EXPECT_EQ(c["bos_token"], "<s>");
  EXPECT_EQ(c["eos_token"], "</s>");
  EXPECT_TRUE(c["add_bos_token"].get<bool>());
}

TEST(TokenizerSynth, RefusesWhatItCannotExpress) {
  xquant::sdk::hf_tokenizer::GgufVocabulary v;
  v.model = "gpt2";
  v.tokens = {"a", "b"};
  v.pre = "kimi-k2";
  try {
    (void)xquant::sdk::hf_tokenizer::tokenizer_json(v);
    FAIL() << "no error";
  } catch (const xquant::sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre 'kimi-k2'"), std::string::npos) << e.what();
  }
  v.pre = "gpt-2";
  v.model = "t5";
  EXPECT_THROW((void)xquant::sdk::hf_tokenizer::tokenizer_json(v), xquant::sdk::Error);
  v.model = "llama";
  v.scores = {0.0};  // one score for two tokens
  EXPECT_THROW((void)xquant::sdk::hf_tokenizer::tokenizer_json(v), xquant::sdk::Error);
}

}  // namespace
