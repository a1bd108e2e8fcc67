// test_decode_graphs.cpp: decode steps replayed from per-batch-size
// recordings (engine/decode_graphs.hpp) give what the same steps run
// eagerly give, on the real stories260K weights on `cuda` (skipped without
// a GPU), and the `cpu` provider records nothing.
//   - Batches of 1, 2, 4 and 8 sequences (already bucket sizes, so the
//     replayed kernels see the eager shapes): greedy ids equal at every one
//     of 40 steps, and the steps after each bucket's first were replays.
//   - A batch of 3 (padded to 4 rows when replayed; cuBLAS may then pick
//     another kernel for the GEMMs): logits within 1e-5 relative (F32
//     weights and KV), argmax equal except where the eager top-2 gap is
//     under 1e-3.
//   - Caches made one after another (F32 then BF16 pools, block sizes 16
//     and 32: the allocator hands the next cache the freed one's memory)
//     are never replayed with an earlier cache's recordings: each run's
//     logits are the eager ones, and a destroyed cache's recordings are
//     released. Keyed by the pools' address, a BF16 cache replayed the F32
//     cache's kernels (session ten's wrong BF16 paged logits on the H200).
//   - A long prefill between decode steps grows the engine's buffers: the
//     recordings are dropped and made again, and the tokens stay the eager
//     ones.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/decode_graphs.hpp"
#include "engine/model.hpp"
#include "engine/paged_kv.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kGguf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K/stories260K.gguf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

std::unique_ptr<Model> open(const std::string& provider, bool graphs, std::string* why) {
  unsetenv("XQUANT_DECODE_GRAPHS");  // the option below decides
  ModelOptions o;
  o.provider = provider;
  o.decode_graphs = graphs;
  try {
    return Model::open(rt(), kGguf, o);
  } catch (const Error& e) {
    if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
    *why = e.what();
    return nullptr;
  }
}

struct Pair {
  std::unique_ptr<Model> graphed, eager;
  std::string why;
};
Pair& cuda_pair() {
  static Pair p = [] {
    Pair q;
    q.graphed = open("cuda", true, &q.why);
    if (q.graphed) q.eager = open("cuda", false, &q.why);
    return q;
  }();
  return p;
}

std::mt19937& rng() {
  static std::mt19937 g = [] {
    const unsigned seed = std::random_device{}();
    std::fprintf(stderr, "decode graph tests: random seed %u\n", seed);
    return std::mt19937(seed);
  }();
  return g;
}

std::vector<std::vector<int32_t>> random_prompts(const Model& m, int n) {
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < n; ++s) {
    std::vector<int32_t> p(static_cast<size_t>(std::uniform_int_distribution<int>(2, 40)(rng())));
    p[0] = 1;  // BOS
    for (size_t i = 1; i < p.size(); ++i)
      p[i] = std::uniform_int_distribution<int32_t>(3, static_cast<int32_t>(m.arch().vocab) - 1)(rng());
    out.push_back(std::move(p));
  }
  return out;
}

// One model's run of `prompts` (one prefill step each), then `steps`
// decode steps of all of them together, feeding back the greedy ids (or,
// when `logits` is set, the argmax of the logits, which it collects).
struct DecodeRun {
  std::vector<std::vector<int32_t>> ids;  // [step][sequence]
  std::vector<std::vector<float>> logits;  // [step] rows of vocab
};
DecodeRun decode(Model& m, const std::vector<std::vector<int32_t>>& prompts, int steps, bool want_logits,
                 int64_t long_prefill_at = -1, PagedKvOptions cache_options = {16, 256, XQ_DTYPE_F32}) {
  PagedKvCache cache(m, cache_options);
  std::vector<PagedSequence> seqs(prompts.size());
  std::vector<int32_t> last(prompts.size());
  for (size_t s = 0; s < prompts.size(); ++s)
    last[s] = m.forward_paged_greedy(cache, {{&seqs[s], prompts[s].data(), static_cast<int64_t>(prompts[s].size())}})[0];
  DecodeRun r;
  for (int t = 0; t < steps; ++t) {
    if (t == long_prefill_at) {  // a long prompt in its own sequence: grows every scratch buffer
      PagedSequence big;
      std::vector<int32_t> p(200, 5);
      p[0] = 1;
      (void)m.forward_paged_greedy(cache, {{&big, p.data(), static_cast<int64_t>(p.size())}});
      cache.release(big);
    }
    std::vector<PagedInput> batch;
    for (size_t s = 0; s < seqs.size(); ++s) batch.push_back({&seqs[s], &last[s], 1});
    if (want_logits) {
      std::vector<float> lg = m.forward_paged(cache, batch);
      const int64_t V = m.arch().vocab;
      for (size_t s = 0; s < seqs.size(); ++s)
        last[s] = static_cast<int32_t>(std::max_element(lg.begin() + s * V, lg.begin() + (s + 1) * V) - lg.begin() -
                                       static_cast<int64_t>(s) * V);
      r.logits.push_back(std::move(lg));
    } else {
      last = m.forward_paged_greedy(cache, batch);
    }
    r.ids.push_back(last);
  }
  return r;
}

#define REQUIRE_CUDA(p)                                                                  \
  Pair& p = cuda_pair();                                                                 \
  if (!p.graphed) GTEST_SKIP() << "cuda provider unusable here: " << p.why;              \
  ASSERT_NE(p.graphed->decode_graphs(), nullptr) << "the cuda provider records graphs"; \
  ASSERT_EQ(p.eager->decode_graphs(), nullptr)

}  // namespace

TEST(DecodeGraphs, BucketSizedBatchesReplayTheEagerTokens) {
  REQUIRE_CUDA(p);
  for (int b : {1, 2, 4, 8}) {
    SCOPED_TRACE("batch " + std::to_string(b));
    const auto prompts = random_prompts(*p.eager, b);
    const auto before = p.graphed->decode_graphs()->stats();
    const DecodeRun g = decode(*p.graphed, prompts, 40, false);
    const DecodeRun e = decode(*p.eager, prompts, 40, false);
    const auto after = p.graphed->decode_graphs()->stats();
    for (size_t t = 0; t < e.ids.size(); ++t) ASSERT_EQ(g.ids[t], e.ids[t]) << "step " << t;
    EXPECT_GE(after.recorded, before.recorded + 1);
    // 40 steps grow each sequence by at most 3 blocks of 16: at most 3
    // table widths, so at most 3 eager steps, the rest replays.
    EXPECT_GE(after.replayed, before.replayed + 37);
    EXPECT_EQ(after.refused, 0u);
  }
}

TEST(DecodeGraphs, PaddedBatchKeepsTheEagerLogits) {
  REQUIRE_CUDA(p);
  const auto prompts = random_prompts(*p.eager, 3);
  const auto before = p.graphed->decode_graphs()->stats();
  const DecodeRun g = decode(*p.graphed, prompts, 24, true);
  const DecodeRun e = decode(*p.eager, prompts, 24, true);
  EXPECT_GE(p.graphed->decode_graphs()->stats().replayed, before.replayed + 21);
  const int64_t V = p.eager->arch().vocab;
  for (size_t t = 0; t < e.logits.size(); ++t) {
    double num = 0, den = 0;
    for (size_t i = 0; i < e.logits[t].size(); ++i) {
      const double d = static_cast<double>(g.logits[t][i]) - e.logits[t][i];
      num += d * d;
      den += static_cast<double>(e.logits[t][i]) * e.logits[t][i];
    }
    ASSERT_LE(std::sqrt(num / den), 1e-5) << "step " << t;
    for (size_t s = 0; s < 3; ++s) {
      std::vector<float> row(e.logits[t].begin() + s * V, e.logits[t].begin() + (s + 1) * V);
      std::nth_element(row.begin(), row.begin() + 1, row.end(), std::greater<float>());
      if (row[0] - row[1] < 1e-3f) return;  // a near-tie: the paths may part here
      ASSERT_EQ(g.ids[t][s], e.ids[t][s]) << "step " << t << " sequence " << s;
    }
  }
}

// Relative RMS difference of two logit vectors.
double rel_rms(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

TEST(DecodeGraphs, ANewCacheIsNeverReplayedWithAnEarlierCachesRecordings) {
  REQUIRE_CUDA(p);
  const auto prompts = random_prompts(*p.eager, 1);
  const PagedKvOptions caches[] = {
      {16, 64, XQ_DTYPE_F32}, {16, 64, XQ_DTYPE_BF16}, {32, 32, XQ_DTYPE_BF16}, {16, 64, XQ_DTYPE_F32}};
  for (const PagedKvOptions& o : caches) {
    SCOPED_TRACE("block size " + std::to_string(o.block_size) + (o.dtype == XQ_DTYPE_BF16 ? ", BF16" : ", F32"));
    const auto before = p.graphed->decode_graphs()->stats();
    const DecodeRun g = decode(*p.graphed, prompts, 12, true, -1, o);
    const auto after = p.graphed->decode_graphs()->stats();
    const DecodeRun e = decode(*p.eager, prompts, 12, true, -1, o);
    EXPECT_GE(after.replayed, before.replayed + 8);
    EXPECT_EQ(after.dropped - before.dropped, after.recorded - before.recorded)
        << "the cache's recordings are released with it";
    for (size_t t = 0; t < e.logits.size(); ++t) {
      ASSERT_LE(rel_rms(g.logits[t], e.logits[t]), 1e-5) << "step " << t;
      if (g.ids[t] != e.ids[t]) break;  // a near-tie parted the runs: later steps differ in input
    }
  }
}

TEST(DecodeGraphs, RecordingsAreMadeAgainWhenBuffersGrow) {
  REQUIRE_CUDA(p);
  const auto prompts = random_prompts(*p.eager, 2);
  const auto before = p.graphed->decode_graphs()->stats();
  const DecodeRun g = decode(*p.graphed, prompts, 30, false, 10);
  const DecodeRun e = decode(*p.eager, prompts, 30, false, 10);
  for (size_t t = 0; t < e.ids.size(); ++t) ASSERT_EQ(g.ids[t], e.ids[t]) << "step " << t;
  const auto after = p.graphed->decode_graphs()->stats();
  EXPECT_GT(after.dropped, before.dropped) << "the long prefill moved the buffers the recordings use";
  EXPECT_GE(after.replayed, before.replayed + 20);
}

TEST(DecodeGraphs, CpuProviderRecordsNothing) {
  std::string why;
  auto m = open("cpu", true, &why);
  ASSERT_TRUE(m) << why;
  EXPECT_EQ(m->decode_graphs(), nullptr);
}
