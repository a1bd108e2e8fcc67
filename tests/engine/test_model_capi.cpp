// test_model_capi.cpp: the model functions of the embedding C API
// (xquant.h) on stories260K: open, perplexity (same number as the C++
// engine), greedy generation, and errors reported as status + message.
#include "engine/evaluate.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

namespace {
const std::string kShared = XQUANT_SHARED_DIR;
}

TEST(ModelCApi, OpenPerplexityGenerateAndErrors) {
  xq_runtime* rt = nullptr;
  ASSERT_EQ(xq_runtime_create(nullptr, &rt), XQ_OK) << xq_last_error();
  xq_model* m = nullptr;
  ASSERT_EQ(xq_model_open(rt, (kShared + "/models/stories260K/stories260K.gguf").c_str(), &m), XQ_OK) << xq_last_error();
  double ppl = 0, nll = 0;
  uint64_t scored = 0;
  std::string text = kShared + "/data/tinystories/tinystories_val.subset.txt";
  ASSERT_EQ(xq_model_perplexity(m, text.c_str(), 256, 1000, &ppl, &nll, &scored), XQ_OK) << xq_last_error();
  EXPECT_EQ(scored, 3u * 255 + (1000 - 768 - 1));
  EXPECT_NEAR(ppl, std::exp(nll), 1e-9 * ppl);
  EXPECT_TRUE(std::isfinite(ppl) && ppl > 1.0);
  char* out = nullptr;
  ASSERT_EQ(xq_model_generate(m, "Once upon a time", 12, 0.0f, 0, &out), XQ_OK) << xq_last_error();
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(std::string(out).rfind(", there was a little girl", 0), 0u) << out;
  xq_string_free(out);
  // Errors: a status and a message naming the problem, never a crash.
  EXPECT_EQ(xq_model_perplexity(m, "/nonexistent/file.txt", 0, 0, nullptr, nullptr, nullptr), XQ_ERR_IO);
  EXPECT_NE(std::string(xq_last_error()).find("/nonexistent/file.txt"), std::string::npos);
  xq_model* bad = nullptr;
  EXPECT_NE(xq_model_open(rt, "/nonexistent/model.gguf", &bad), XQ_OK);
  EXPECT_EQ(bad, nullptr);
  EXPECT_NE(std::string(xq_last_error()), "");
  EXPECT_EQ(xq_model_generate(nullptr, "x", 1, 0, 0, &out), XQ_ERR_INVALID_ARGUMENT);
  xq_model_close(m);
  xq_model_close(nullptr);
  xq_runtime_destroy(rt);
}
