// test_decode_pool.cpp: what a decode step costs the thread pool, counted
// (never timed). On stories260K quantized to INT4 (q|k|v and gate|up stacked),
// a token hands the pool one job per large GEMV, four per layer (everything
// else runs inline on the caller), and with workers that spin between jobs
// (XQUANT_POOL_SPIN_US) none of those jobs needs a wake-up syscall; with
// spinning off the same jobs run and give the same tokens (test_thread_pool
// counts the wake-ups of parked workers).
#include "core/runtime.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"
#include "stories_quantized.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kGguf = test::kSharedDir / "models/stories260K/stories260K.gguf";

GenerateResult decode_with_spin(const fs::path& model_dir, const char* spin_us, int64_t* layers) {
  ::setenv("XQUANT_POOL_SPIN_US", spin_us, 1);
  RuntimeOptions ro;
  ro.threads = 2;
  Runtime rt(ro);
  ::unsetenv("XQUANT_POOL_SPIN_US");
  ModelOptions mo;
  mo.tokenizer_from = kGguf;
  auto m = Model::open(rt, model_dir, mo);
  *layers = m->arch().n_layers;
  GenerateOptions go;
  go.n_tokens = 24;
  go.stop_at_eog = false;
  return generate_tokens(*m, {1, 403, 407, 261}, go);
}

}  // namespace

TEST(DecodePool, FourJobsPerLayerAndNoWakeupsWhileWorkersSpin) {
  fs::path int4 = test::quantize_stories_rtn("xquant_decode_pool_test", "rtn-int4-g32",
                                             "    weights:\n      bits: 4\n      symmetric: true\n      group_size: 32\n");
  int64_t layers = 0;
  GenerateResult spin = decode_with_spin(int4, "1000000", &layers);
  ASSERT_EQ(spin.decode_steps, 23);
  // q|k|v, o, gate|up, down per layer, and lm_head (a quantized checkpoint's
  // table is held as Q8_0 blocks by default: its block GEMV is one job); the
  // single-row ops run inline.
  EXPECT_EQ(spin.decode_pool_jobs, static_cast<uint64_t>(spin.decode_steps * (4 * layers + 1)));
  // No worker parks during the decode (that takes a 1 s gap between jobs);
  // at most the first job finds one that parked before it began (a load
  // slower than the spin budget on a busy machine).
  EXPECT_EQ(spin.decode_pool_parks, 0u);
  EXPECT_LE(spin.decode_pool_wakeups, 1u);
  EXPECT_GT(spin.decode_ops, spin.decode_pool_jobs);

  GenerateResult park = decode_with_spin(int4, "0", &layers);
  EXPECT_EQ(park.tokens, spin.tokens);  // the pool's schedule never changes the result
  EXPECT_EQ(park.decode_pool_jobs, spin.decode_pool_jobs);
  EXPECT_EQ(park.decode_ops, spin.decode_ops);
  fs::remove_all(int4.parent_path());
}
