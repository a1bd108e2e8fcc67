// test_device_xq.cpp: an xq checkpoint whose quantized weights are stored in
// the cuda provider's layouts (cuda.w4a16-mma.v1) loads on `cuda` with zero
// bytes repacked, every quantized Linear taken as stored, and runs like the
// compressed-tensors copy of the same quantization (which the provider
// repacks at load): same greedy tokens, logits and perplexity within the
// difference of running q|k|v and gate|up stacked (compressed-tensors) or
// one by one (xq as stored). Skips without a usable GPU.
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

Runtime& runtime() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

void quantize_to(const std::string& format, const fs::path& out) {
  const std::string yaml = "model:\n  path: " + (kShared / "models/stories260K-hf").string() +
                           "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n    weights:\n      bits: 4\n"
                           "      symmetric: false\n      group_size: 32\nignore: [lm_head]\noutput:\n"
                           "  format: " + format + "\n  path: " + out.string() + "\n";
  xq_runtime* crt = nullptr;
  ASSERT_EQ(xq_runtime_create(nullptr, &crt), XQ_OK) << xq_last_error();
  ASSERT_EQ(xq_run_pipeline_string(crt, yaml.c_str(), nullptr), XQ_OK) << xq_last_error();
  xq_runtime_destroy(crt);
}

std::unique_ptr<Model> open_cuda(const fs::path& path, std::string* why) {
  ModelOptions o;
  o.provider = "cuda";
  o.tokenizer_from = kGguf;
  try {
    return Model::open(runtime(), path, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    *why = e.what();
    return nullptr;
  }
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST(DeviceXq, StoredCudaLayoutsLoadWithNothingRepacked) {
  const fs::path dir = fs::temp_directory_path() / ("xquant_device_xq_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    std::string why;
    // Cheap probe first: without a GPU the open is refused before any quantization.
    auto probe = open_cuda(kGguf, &why);
    if (!probe) GTEST_SKIP() << "cuda provider unusable here: " << why;
  }
  quantize_to("compressed-tensors", dir / "ct");
  quantize_to("xq", dir / "xq");
  std::string why;
  auto ct = open_cuda(dir / "ct", &why);
  auto xq = open_cuda(dir / "xq", &why);
  ASSERT_TRUE(ct && xq) << why;
  const auto& sc = ct->load_stats();
  const auto& sx = xq->load_stats();
  std::printf("compressed-tensors on cuda: %llu bytes repacked (%d Linears); xq: %llu repacked (%d), %llu stored (%d)\n",
              static_cast<unsigned long long>(sc.repacked_bytes), sc.repacked_linears,
              static_cast<unsigned long long>(sx.repacked_bytes), sx.repacked_linears,
              static_cast<unsigned long long>(sx.stored_bytes), sx.stored_linears);
  EXPECT_GT(sc.repacked_bytes, 0u);
  EXPECT_EQ(sx.repacked_bytes, 0u);
  EXPECT_EQ(sx.repacked_linears, 0);
  EXPECT_EQ(sx.stored_linears, xq->quantized_linears());
  EXPECT_EQ(xq->quantized_linears(), ct->quantized_linears());
  EXPECT_EQ(xq->dequantized_linears(), 0);
  EXPECT_NE(xq->layer(0).linears[0].layout.find("stored, not repacked"), std::string::npos)
      << xq->layer(0).linears[0].layout;
  // The same quantization runs the same.
  GenerateOptions o;
  o.n_tokens = 32;
  o.stop_at_eog = false;
  const auto gc = generate(*ct, "Once upon a time", o), gx = generate(*xq, "Once upon a time", o);
  EXPECT_EQ(gx.tokens, gc.tokens) << "ct: " << gc.text << "\nxq: " << gx.text;
  std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const auto ids = eval_tokens(*ct, ss.str(), 1024);
  KvCache kc(*ct, 64), kx(*xq, 64);
  const auto lc = ct->forward({SequenceInput{&kc, ids.data(), 32, true}});
  const auto lx = xq->forward({SequenceInput{&kx, ids.data(), 32, true}});
  EXPECT_LE(rel_diff(lx, lc), 1e-2);
  const auto pc = perplexity(*ct, ids, 256), px = perplexity(*xq, ids, 256);
  EXPECT_LE(std::fabs(px.perplexity / pc.perplexity - 1.0), 5e-3) << px.perplexity << " vs " << pc.perplexity;
  std::printf("W4A16 g32 asym perplexity on cuda: compressed-tensors %.5f, xq %.5f\n", pc.perplexity, px.perplexity);
  fs::remove_all(dir);
}
