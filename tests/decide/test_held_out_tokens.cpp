// test_held_out_tokens.cpp: the evaluation tokens from a tokenized prefix
// of the held-out text equal the first tokens of the whole text's, on the
// real stories260K tokenizer and WikiText-2 test and TinyStories (different
// line and word structure), at sizes that need one and several doublings of
// the prefix, and when the text runs out first.
#include "core/runtime.hpp"
#include "decide/held_out_tokens.hpp"
#include "decide/overlap.hpp"
#include "engine/evaluate.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_held_out_tokens {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;

}  // namespace

TEST(HeldOutTokens, EqualTheWholeTextsFirstTokens) {
  RuntimeOptions o;
  o.log_level = XQ_LOG_ERROR;
  o.threads = 2;
  Runtime rt(o);
  ModelOptions mo;
  mo.tokenizer_from = kShared + "/models/stories260K/stories260K.gguf";
  auto model = Model::open(rt, kShared + "/models/stories260K-hf", mo);
  for (const char* file : {"/data/wikitext-2-raw/wiki.test.raw", "/data/tinystories/tinystories_val.subset.txt"}) {
    const std::string text = decide::read_text_file(kShared + file, "text");
    const std::vector<int32_t> whole = eval_tokens(*model, text, 0);
    for (uint64_t n : {2ull, 300ull, 8192ull, 40000ull}) {
      const std::vector<int32_t> fast = decide::held_out_tokens(*model, text, n);
      ASSERT_EQ(fast.size(), std::min<size_t>(n, whole.size())) << file << " " << n;
      EXPECT_TRUE(std::equal(fast.begin(), fast.end(), whole.begin())) << file << " " << n;
    }
  }
  // A short text ends before max_tokens: all of it.
  const std::string short_text = "One day, a little girl went to the park.\nShe saw a dog.\n";
  EXPECT_EQ(decide::held_out_tokens(*model, short_text, 10000), eval_tokens(*model, short_text, 10000));
}

}  // namespace test_held_out_tokens
