// test_device_fp8.cpp: an FP8 checkpoint (compressed-tensors float-quantized,
// FP8_DYNAMIC: E4M3 weights per channel, dynamic per-token E4M3 activations)
// of stories260K-hf on the `cuda` provider vs the same checkpoint on `cpu`,
// with no FP8-specific engine code: the cuda provider prepares the canonical
// FP8 tensor into its FP8 GEMM layout (cuda-w8a8-fp8-nk) where its shape
// allows (K and N multiples of 16: the attention projections of this model;
// the 172-wide MLP is dequantized on load), and perplexity must stay within
// 2% of the CPU engine's (BF16 activations on the GPU vs F32 on the CPU, and
// the FP8 quantization of BF16 vs F32 activations). Skips without a GPU.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

namespace {
const fs::path kShared = XQUANT_SHARED_DIR;
const fs::path kGguf = kShared / "models/stories260K/stories260K.gguf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

std::vector<int32_t> eval_ids(Model& m, uint64_t n) {
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  return eval_tokens(m, ss.str(), n);
}
}  // namespace

TEST(DeviceFp8, Fp8DynamicCheckpointRunsOnTheGpuWithPerplexityCloseToCpu) {
  ModelOptions go;
  go.provider = "cuda";
  try {
    auto probe = Model::open(rt(), kGguf, go);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    GTEST_SKIP() << "cuda provider unusable here: " << e.what();
  }
  const fs::path out = fs::temp_directory_path() / ("xquant_device_fp8_" + std::to_string(::getpid())) / "fp8";
  fs::remove_all(out);
  const std::string yaml = "model:\n  path: " + (kShared / "models/stories260K-hf").string() +
                           "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n    weights: {type: float, bits: 8}\n"
                           "    activations: {bits: 8, strategy: token}\nignore: [lm_head]\noutput:\n"
                           "  format: compressed-tensors\n  path: " + out.string() + "\n";
  xq_runtime* crt = nullptr;
  ASSERT_EQ(xq_runtime_create(nullptr, &crt), XQ_OK) << xq_last_error();
  ASSERT_EQ(xq_run_pipeline_string(crt, yaml.c_str(), nullptr), XQ_OK) << xq_last_error();
  xq_runtime_destroy(crt);

  go.tokenizer_from = kGguf;
  auto g = Model::open(rt(), out, go);
  ModelOptions co;
  co.tokenizer_from = kGguf;
  auto c = Model::open(rt(), out, co);
  EXPECT_EQ(g->quantized_linears() + g->dequantized_linears(), 35);
  EXPECT_GT(g->quantized_linears(), 0) << "no Linear ran through the cuda FP8 GEMM";
  const LinearWeights& q0 = g->layer(0).qkv.desc ? g->layer(0).qkv : g->layer(0).linears[0];
  EXPECT_EQ(q0.layout, "cuda-w8a8-fp8-nk");
  std::printf("FP8 on cuda: %d Linears through QMATMUL (layer 0 q: %s), %d dequantized on load\n",
              g->quantized_linears(), q0.layout.c_str(), g->dequantized_linears());
  const auto ids = eval_ids(*c, 2048);
  const auto pc = perplexity(*c, ids, 256), pg = perplexity(*g, ids, 256);
  EXPECT_EQ(pg.tokens_scored, pc.tokens_scored);
  EXPECT_LE(std::fabs(pg.perplexity / pc.perplexity - 1.0), 0.02) << pg.perplexity << " vs " << pc.perplexity;
  std::printf("FP8 W8A8 dynamic perplexity cpu %.5f cuda %.5f (%+.3f%%)\n", pc.perplexity, pg.perplexity,
              100 * (pg.perplexity / pc.perplexity - 1));
  GenerateOptions o;
  o.n_tokens = 16;
  EXPECT_EQ(generate(*g, "", o).full_text.rfind("Once upon a time", 0), 0u);
  fs::remove_all(out.parent_path());
}
