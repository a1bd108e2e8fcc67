// test_device_decode_ops.cpp: the contiguous-cache decode step with the
// fused ROPE_KV and the cuda provider's 16-byte norms and ARGMAX against the
// same step on the ops they replaced (XQUANT_ROPE_KV=0 XQUANT_VECTOR_NORMS=0
// XQUANT_VECTOR_ARGMAX=0), on real
// weights: stories260K as GGUF (head_dim 8, 8 heads over 4 kv heads), as
// its Hugging Face safetensors export and as a W4A16 g32 RTN copy of that,
// with F32 and with BF16 device weights. A 24-token prefill, 16 teacher-forced decode rows, 32 greedy
// tokens. Bounds: logits within 1e-5 relative RMS with F32 weights (the
// rotation is the same float formula; the norms sum in another order),
// 1e-2 with BF16 weights (a norm's BF16 output can round the other way);
// greedy ids equal; and a decode step runs 4 ops per layer fewer (five ops
// become one ROPE_KV). Skips without a GPU.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "engine/evaluate.hpp"

#include <xquant/xquant.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace xquant;
namespace fs = std::filesystem;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_device_decode_ops {

namespace {

const fs::path kShared = XQUANT_SHARED_DIR;

Runtime& runtime() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

struct StepRun {
  std::vector<float> logits;
  std::vector<int32_t> greedy;
  double ops_per_decode_step = 0;
};

// The fused ops on (XQUANT_ROPE_KV, XQUANT_VECTOR_NORMS, XQUANT_VECTOR_ARGMAX unset) or off.
StepRun run(Model& m, const std::vector<int32_t>& ids, bool previous_ops) {
  if (previous_ops) {
    ::setenv("XQUANT_ROPE_KV", "0", 1);
    ::setenv("XQUANT_VECTOR_NORMS", "0", 1);
    ::setenv("XQUANT_VECTOR_ARGMAX", "0", 1);
  }
  StepRun r;
  KvCache c(m, 64);
  r.logits = m.forward({SequenceInput{&c, ids.data(), 24, false}});
  const uint64_t ops0 = m.kernels().ops_run();
  for (size_t i = 24; i < 40; ++i) {
    const auto row = m.forward({SequenceInput{&c, ids.data() + i, 1, false}});
    r.logits.insert(r.logits.end(), row.begin(), row.end());
  }
  r.ops_per_decode_step = static_cast<double>(m.kernels().ops_run() - ops0) / 16.0;
  GenerateOptions o;
  o.n_tokens = 32;
  o.stop_at_eog = false;
  r.greedy = generate_tokens(m, std::vector<int32_t>(ids.begin(), ids.begin() + 8), o).tokens;
  ::unsetenv("XQUANT_ROPE_KV");
  ::unsetenv("XQUANT_VECTOR_NORMS");
  ::unsetenv("XQUANT_VECTOR_ARGMAX");
  return r;
}

}  // namespace

TEST(DeviceDecodeStepOps, MatchThePreviousOps) {
  const fs::path gguf = kShared / "models/stories260K/stories260K.gguf";
  try {  // no GPU: skip before making the W4A16 copy
    ModelOptions o;
    o.provider = "cuda";
    Model::open(runtime(), gguf, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    GTEST_SKIP() << "cuda provider unusable here: " << e.what();
  }
  // A compressed-tensors W4A16 copy (RTN int4 g32, lm_head dense), made here
  // as DeviceEngine.CompressedTensorsW4A16GeneratesOnTheGpu makes it: its
  // Linears take BF16 activations, so the norms' BF16 outputs and ROPE_KV's
  // BF16 rows run (on the H200, 2026-12-01, the Llama-shaped W4A16 model's
  // greedy ids differed between the two variants from the first token).
  const fs::path w4 = fs::temp_directory_path() / ("xquant_decode_ops_" + std::to_string(::getpid())) / "w4a16-g32";
  fs::remove_all(w4);
  const std::string yaml = "model:\n  path: " + (kShared / "models/stories260K-hf").string() +
                           "\nquantize:\n  - targets: [Linear]\n    algorithm: rtn\n    weights:\n      bits: 4\n"
                           "      symmetric: true\n      group_size: 32\nignore: [lm_head]\noutput:\n"
                           "  format: compressed-tensors\n  path: " + w4.string() + "\n";
  xq_runtime* crt = nullptr;
  ASSERT_EQ(xq_runtime_create(nullptr, &crt), XQ_OK) << xq_last_error();
  ASSERT_EQ(xq_run_pipeline_string(crt, yaml.c_str(), nullptr), XQ_OK) << xq_last_error();
  xq_runtime_destroy(crt);
  for (const fs::path& path : {gguf, kShared / "models/stories260K-hf", w4}) {
    for (const char* weights : {"f32", "bf16"}) {
      SCOPED_TRACE(path.filename().string() + " " + weights);
      ::setenv("XQUANT_DEVICE_WEIGHTS", weights, 1);
      ModelOptions o;
      o.provider = "cuda";
      o.tokenizer_from = path == gguf ? fs::path() : gguf;
      std::unique_ptr<Model> m;
      try {
        m = Model::open(runtime(), path, o);
      } catch (const Error& e) {
        ::unsetenv("XQUANT_DEVICE_WEIGHTS");
        if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
        GTEST_SKIP() << "cuda provider unusable here: " << e.what();
      }
      ::unsetenv("XQUANT_DEVICE_WEIGHTS");
      std::ifstream in(kShared / "data/tinystories/tinystories_val.subset.txt");
      std::stringstream ss;
      ss << in.rdbuf();
      const auto ids = eval_tokens(*m, ss.str(), 41);
      ASSERT_GE(ids.size(), 40u);
      const StepRun before = run(*m, ids, true), now = run(*m, ids, false);
      const double d = rel_rms(now.logits, before.logits);
      std::printf("%s, %s weights: logits with ROPE_KV + 16-byte norms vs the previous ops, relative RMS %.3g over 17 rows; "
                  "greedy ids %s; ops per decode step %.0f -> %.0f\n",
                  path.filename().c_str(), weights, d, now.greedy == before.greedy ? "equal" : "differ",
                  before.ops_per_decode_step, now.ops_per_decode_step);
      EXPECT_LE(d, std::string(weights) == "f32" ? 1e-5 : 1e-2);
      EXPECT_EQ(now.greedy, before.greedy);
      EXPECT_EQ(before.ops_per_decode_step - now.ops_per_decode_step, 4.0 * m->arch().n_layers);
    }
  }
  fs::remove_all(w4.parent_path());
}

}  // namespace test_device_decode_ops
