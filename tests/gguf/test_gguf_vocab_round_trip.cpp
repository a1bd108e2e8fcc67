// test_gguf_vocab_round_trip.cpp: a checkpoint quantized from a GGUF source
// converts back to GGUF with the source's vocabulary (plugins/gguf_writer
// vocab_meta.cpp).
//
//  * stories260K.gguf (llama SentencePiece vocabulary) quantized to
//    compressed-tensors carries a synthesised tokenizer.json (BPE with
//    byte_fallback); `xquant convert` to GGUF turns it back into
//    tokenizer.ggml.model "llama" with the source's tokens, token types,
//    special ids and scores (stories260K's scores come back exactly), and
//    our tokenizer on the new file gives the source's ids for the
//    TinyStories text.
//  * quantized to xq, which keeps the GGUF vocabulary keys in its manifest,
//    the GGUF gets those keys back under their GGUF names and types.
#include "gguf_file.hpp"
#include "subprocess.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace gg = xquant::gguf;

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";
const fs::path kText = kShared / "data/tinystories/tinystories_val.subset.txt";

void run_ok(std::vector<std::string> args) {
  auto r = xquant::test::run_xquant(std::move(args));
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

std::vector<int64_t> token_ids(const fs::path& model) {
  auto r = xquant::test::run_xquant({"tokenize", "--model", model.string(), "--file", kText.string(), "--bos", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out)["ids"].get<std::vector<int64_t>>() : std::vector<int64_t>{};
}

void expect_same_vocabulary(const gg::File& src, const gg::File& out, bool every_key) {
  for (const char* key : {"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                          "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id"}) {
    SCOPED_TRACE(key);
    const gg::Value* a = src.find(key);
    const gg::Value* b = out.find(key);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->type, b->type);
    EXPECT_EQ(a->elem, b->elem);
    EXPECT_EQ(a->s, b->s);
    EXPECT_EQ(a->i, b->i);
    EXPECT_EQ(src.strings(*a), out.strings(*b));  // long arrays are read from the mapping
    EXPECT_EQ(a->ints, b->ints);
    EXPECT_EQ(a->floats, b->floats);  // -0.0 == 0.0: the sign of a zero score orders nothing
  }
  if (!every_key) return;
  for (const auto& [key, v] : src.kv()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    SCOPED_TRACE(key);
    const gg::Value* b = out.find(key);
    ASSERT_TRUE(b);
    EXPECT_EQ(v.type, b->type);
    EXPECT_EQ(v.i, b->i);
  }
}

TEST(GgufVocabRoundTrip, ACompressedTensorsCheckpointFromAGgufConvertsBackWithItsSentencePieceVocabulary) {
  xquant::test::TempDir dir("xquant-gguf-vocab");
  run_ok({"-q", "quantize", "--model", kGguf.string(), "--out", (dir / "ct").string(), "--algorithm", "rtn", "--bits",
          "4", "--group-size", "32"});
  const auto tj = nlohmann::json::parse(xquant::test::read_file(dir / "ct" / "tokenizer.json"));
  ASSERT_TRUE(tj["model"]["byte_fallback"].get<bool>());  // the synthesised SentencePiece form
  run_ok({"-q", "convert", "--model", (dir / "ct").string(), "--out", (dir / "back.gguf").string(), "--format", "gguf"});
  const gg::File src(kGguf.string()), out((dir / "back.gguf").string());
  expect_same_vocabulary(src, out, false);
  const gg::Value* prefix = out.find("tokenizer.ggml.add_space_prefix");
  ASSERT_TRUE(prefix);
  EXPECT_EQ(prefix->i, 1);  // llama.cpp's default for SentencePiece, which the source relies on
  const std::vector<int64_t> ids = token_ids(kGguf);
  EXPECT_GT(ids.size(), 10000u);
  EXPECT_EQ(token_ids(dir / "back.gguf"), ids);
}

TEST(GgufVocabRoundTrip, AnXqFileFromAGgufConvertsBackWithTheSameTokenizerKeys) {
  xquant::test::TempDir dir("xquant-gguf-vocab");
  run_ok({"-q", "quantize", "--model", kGguf.string(), "--out", (dir / "m.xq").string(), "--format", "xq",
          "--algorithm", "rtn", "--bits", "4", "--group-size", "32"});
  run_ok({"-q", "convert", "--model", (dir / "m.xq").string(), "--out", (dir / "back.gguf").string(), "--format", "gguf"});
  expect_same_vocabulary(gg::File(kGguf.string()), gg::File((dir / "back.gguf").string()), true);
}

}  // namespace
