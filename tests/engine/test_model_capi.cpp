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

// xq_model_open_ex: NULL options are the defaults (cpu, the model's own
// vocabulary) and give the same text as xq_model_open; each field is taken
// (a provider that is not loaded, an unknown device-weights name and a
// weight memory limit below the layers' bytes are refused with a message
// naming them); a struct_size that does not reach `provider` is refused.
TEST(ModelCApi, OpenExTakesItsOptionsAndRefusesBadOnes) {
  xq_runtime* rt = nullptr;
  ASSERT_EQ(xq_runtime_create(nullptr, &rt), XQ_OK) << xq_last_error();
  const std::string gguf = kShared + "/models/stories260K/stories260K.gguf";
  auto greedy = [](xq_model* m) {
    char* out = nullptr;
    EXPECT_EQ(xq_model_generate(m, "Once upon a time", 8, 0.0f, 0, &out), XQ_OK) << xq_last_error();
    std::string s = out ? out : "";
    xq_string_free(out);
    return s;
  };
  xq_model *plain = nullptr, *ex = nullptr;
  ASSERT_EQ(xq_model_open(rt, gguf.c_str(), &plain), XQ_OK) << xq_last_error();
  ASSERT_EQ(xq_model_open_ex(rt, gguf.c_str(), nullptr, &ex), XQ_OK) << xq_last_error();
  EXPECT_EQ(greedy(ex), greedy(plain));
  xq_model_close(ex);
  ex = nullptr;

  xq_model_options o{};
  o.struct_size = sizeof(o);
  o.provider = "cpu";
  o.device_weights = "auto";
  o.weight_memory_limit = 1u << 30;
  ASSERT_EQ(xq_model_open_ex(rt, gguf.c_str(), &o, &ex), XQ_OK) << xq_last_error();
  EXPECT_EQ(greedy(ex), greedy(plain));
  xq_model_close(ex);

  // A checkpoint without a vocabulary takes another's.
  o = xq_model_options{};
  o.struct_size = sizeof(o);
  o.tokenizer_from = gguf.c_str();
  ex = nullptr;
  ASSERT_EQ(xq_model_open_ex(rt, (kShared + "/models/stories260K-hf").c_str(), &o, &ex), XQ_OK) << xq_last_error();
  EXPECT_EQ(greedy(ex), greedy(plain));
  xq_model_close(ex);

  struct Bad {
    const char* what;
    xq_model_options o;
    xq_status status;
    const char* names;
  };
  xq_model_options no_provider{}, bad_weights{}, tight{}, short_struct{};
  no_provider.struct_size = bad_weights.struct_size = tight.struct_size = sizeof(xq_model_options);
  no_provider.provider = "no-such-provider";
  bad_weights.device_weights = "fp4";
  tight.weight_memory_limit = 1000;
  short_struct.struct_size = 8;
  for (const Bad& b : {Bad{"unknown provider", no_provider, XQ_ERR_NOT_FOUND, "no-such-provider"},
                       Bad{"unknown device weights", bad_weights, XQ_ERR_INVALID_ARGUMENT, "xq_model_options.device_weights"},
                       Bad{"weight memory limit", tight, XQ_ERR_OUT_OF_MEMORY, "does not fit"},
                       Bad{"short struct", short_struct, XQ_ERR_INVALID_ARGUMENT, "struct_size"}}) {
    SCOPED_TRACE(b.what);
    xq_model* m = reinterpret_cast<xq_model*>(&rt);  // must come back NULL
    EXPECT_EQ(xq_model_open_ex(rt, gguf.c_str(), &b.o, &m), b.status);
    EXPECT_EQ(m, nullptr);
    EXPECT_NE(std::string(xq_last_error()).find(b.names), std::string::npos) << xq_last_error();
  }
  EXPECT_EQ(xq_model_open_ex(rt, nullptr, nullptr, &ex), XQ_ERR_INVALID_ARGUMENT);
  xq_model_close(plain);
  xq_runtime_destroy(rt);
}
