// test_gguf_file_strings.cpp: string arrays of a GGUF file longer than
// gguf::kKeptStrings (a vocabulary's tokens and merges) are checked at open
// but not kept in the parse; gguf::File::strings reads them from the mapping
// (plugins/gguf/gguf_file.hpp), and the tokenizer copy of a GGUF-to-GGUF
// conversion (plugins/gguf_writer/vocab_meta.cpp) goes through it. Written
// with the writer's Emitter, read back with File: short arrays kept, long
// ones empty in the Value and whole through strings(), every byte of every
// element (empty strings, multi-byte UTF-8, lengths past 255) equal; a long
// array cut short in the file is refused at open.
#include "gguf_emit.hpp"
#include "gguf_file.hpp"
#include "test_files.hpp"

#include <xquant/sdk/error.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace gg = xquant::gguf;
using xquant::test::TempDir;

namespace {

std::vector<std::string> elements(size_t n) {
  std::vector<std::string> v;
  for (size_t i = 0; i < n; ++i)
    v.push_back(i % 97 == 0 ? std::string() : i % 89 == 0 ? std::string(300, 'x') : "\xC4\xA0tok" + std::to_string(i));
  return v;
}

}  // namespace

TEST(GgufFileStrings, LongArraysAreReadFromTheFileShortOnesKept) {
  TempDir dir("xquant-gguf-strings");
  const auto path = dir / "v.gguf";
  const auto shortv = elements(gg::kKeptStrings), longv = elements(gg::kKeptStrings * 3 + 5);
  {
    gg::Emitter e(path);
    e.set("tokenizer.ggml.merges", gg::strings_value(shortv));
    e.set("tokenizer.ggml.tokens", gg::strings_value(longv));
    e.set("general.name", gg::str_value("after the arrays"));
    e.finish();
  }
  const gg::File f(path.string());
  const gg::Value* s = f.find("tokenizer.ggml.merges");
  const gg::Value* l = f.find("tokenizer.ggml.tokens");
  ASSERT_TRUE(s && l);
  EXPECT_EQ(s->strings, shortv);  // kept
  EXPECT_EQ(f.strings(*s), shortv);
  EXPECT_EQ(l->count, longv.size());
  EXPECT_TRUE(l->strings.empty());  // not kept ...
  EXPECT_EQ(f.strings(*l), longv);  // ... but whole from the mapping
  EXPECT_EQ(f.find("general.name")->s, "after the arrays");  // parsing went on past them
}

TEST(GgufFileStrings, ALongArrayCutShortIsRefusedAtOpen) {
  TempDir dir("xquant-gguf-strings");
  const auto path = dir / "v.gguf";
  {
    gg::Emitter e(path);
    e.set("tokenizer.ggml.tokens", gg::strings_value(elements(gg::kKeptStrings * 2)));
    e.finish();
  }
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size / 2);  // inside the array's elements
  try {
    gg::File f(path.string());
    FAIL() << "a truncated string array opened";
  } catch (const xquant::sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.tokens"), std::string::npos) << e.what();
  }
}
