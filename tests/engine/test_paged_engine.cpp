// test_paged_engine.cpp: the engine over the paged KV cache and the
// continuous-batching scheduler, on the real stories260K weights, on the
// `cpu` provider (always) and on `cuda` (skipped without a GPU):
//   - a paged step (prompt in chunks, then decode) gives the logits of the
//     contiguous-cache step;
//   - requests of different prompt and output lengths run together through
//     the scheduler (joining and leaving between steps, chunked prefill
//     mixed with decode, admission waiting for free blocks) each get the
//     tokens a single-request run gives;
//   - the block allocator's accounting and the refusals (a request longer
//     than the model's context or than the whole pool) leave nothing taken.
// Token comparison: greedy ids must be equal at every step, except that a
// request stops being compared at the first step where the single run's
// top-2 logit gap is under `tie` (1e-3 on F32 KV; 0.1 on BF16 KV), where
// rounding may legitimately pick the other token: such steps are counted
// and printed; at most 3 of the 12 requests may end that way on F32 KV, 6 on
// BF16 KV (the H200 run saw 0 and 3). The BF16-KV single run stores its keys
// and values in BF16 too (a paged cache of one sequence): until session ten
// it was the F32 contiguous run, and BF16 rounding alone then moved a token
// at a gap of 0.147 about once in four seeds (seed 2053500797). Inputs are
// fresh each run; the seed is printed and XQUANT_TEST_SEED replays it.
#include "../support/test_seed.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"
#include "engine/paged_kv.hpp"
#include "engine/scheduler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <random>

using namespace xquant;
namespace fs = std::filesystem;

namespace {

const fs::path kGguf = fs::path(XQUANT_SHARED_DIR) / "models/stories260K/stories260K.gguf";

Runtime& rt() {
  static Runtime r{RuntimeOptions{}};
  return r;
}

std::mt19937& rng() {
  static std::mt19937 g(test::seed_from_env_or_fresh("paged engine tests"));
  return g;
}

int rand_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }

// The model on `provider`; nullptr (and *why) when that provider cannot run here.
Model* model_on(const std::string& provider, std::string* why) {
  static std::map<std::string, std::unique_ptr<Model>> models;
  static std::map<std::string, std::string> reasons;
  if (!models.count(provider)) {
    ModelOptions o;
    o.provider = provider;
    try {
      models[provider] = Model::open(rt(), kGguf, o);
    } catch (const Error& e) {
      if (e.status() != XQ_ERR_DEVICE && e.status() != XQ_ERR_NOT_FOUND) throw;
      models[provider] = nullptr;
      reasons[provider] = e.what();
    }
  }
  *why = reasons[provider];
  return models[provider].get();
}

std::vector<int32_t> random_prompt(const Model& m, int n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  p[0] = 1;  // BOS
  for (int i = 1; i < n; ++i) p[static_cast<size_t>(i)] = rand_int(3, static_cast<int>(m.arch().vocab) - 1);
  return p;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Greedy decoding of one request alone, with the gap between the two largest
// logits at every step: on the contiguous cache for F32 KV, on a paged cache
// of the batched run's dtype otherwise, so a BF16-KV batch is compared with a
// run that rounds its keys and values the same way (against the F32 run, the
// BF16 rounding alone moved a token at a gap of 0.147 on the H200).
struct SingleRun {
  std::vector<int32_t> tokens;
  std::vector<float> gap;
};
SingleRun single(Model& m, const std::vector<int32_t>& prompt, int64_t n_new, xq_dtype kv = XQ_DTYPE_F32) {
  SingleRun r;
  const int64_t len = static_cast<int64_t>(prompt.size()) + n_new;
  std::optional<KvCache> cache;
  std::optional<PagedKvCache> paged;
  if (kv == XQ_DTYPE_F32) cache.emplace(m, len);
  else paged.emplace(m, PagedKvOptions{.block_size = 16, .num_blocks = (len + 15) / 16, .dtype = kv});
  PagedSequence seq;
  auto step = [&](const int32_t* ids, int64_t n) {
    return cache ? m.forward({{&*cache, ids, n, false}}) : m.forward_paged(*paged, {{&seq, ids, n}});
  };
  std::vector<float> lg = step(prompt.data(), static_cast<int64_t>(prompt.size()));
  for (int64_t i = 0; i < n_new; ++i) {
    std::vector<float> s = lg;
    const auto top = std::max_element(lg.begin(), lg.end());
    const int32_t id = static_cast<int32_t>(top - lg.begin());
    std::nth_element(s.begin(), s.begin() + 1, s.end(), std::greater<float>());
    r.tokens.push_back(id);
    r.gap.push_back(s[0] - s[1]);
    if (i + 1 < n_new) lg = step(&r.tokens.back(), 1);
  }
  if (paged) paged->release(seq);
  return r;
}

class PagedEngine : public ::testing::TestWithParam<std::string> {
 protected:
  Model* m = nullptr;
  void SetUp() override {
    std::string why;
    m = model_on(GetParam(), &why);
    if (!m) GTEST_SKIP() << GetParam() << " provider unusable here: " << why;
  }
};

TEST_P(PagedEngine, ChunkedPagedStepsGiveTheContiguousLogits) {
  const int n = rand_int(30, 60);
  const std::vector<int32_t> prompt = random_prompt(*m, n);
  KvCache contiguous(*m, n + 8);
  std::vector<float> want = m->forward({{&contiguous, prompt.data(), n, false}});
  PagedKvCache paged(*m, {.block_size = 16, .num_blocks = 8});
  PagedSequence seq;
  std::vector<float> got;
  for (int at = 0; at < n;) {  // chunks of 7..20 tokens
    const int c = std::min(n - at, rand_int(7, 20));
    got = m->forward_paged(paged, {{&seq, prompt.data() + at, c}});
    at += c;
  }
  const double bound = GetParam() == "cpu" ? 1e-5 : 1e-4;
  EXPECT_LE(rel_diff(got, want), bound) << "prefill";
  for (int i = 0; i < 8; ++i) {
    const int32_t tok = rand_int(3, static_cast<int>(m->arch().vocab) - 1);
    want = m->forward({{&contiguous, &tok, 1, false}});
    got = m->forward_paged(paged, {{&seq, &tok, 1}});
    EXPECT_LE(rel_diff(got, want), bound) << "decode step " << i;
  }
  EXPECT_EQ(seq.size, n + 8);
  EXPECT_EQ(static_cast<int64_t>(seq.blocks.size()), paged.blocks_for(n + 8));
  paged.release(seq);
  EXPECT_EQ(paged.free_blocks(), paged.num_blocks());
}

void continuous_matches_single(Model& m, xq_dtype kv, float tie, int max_ties) {
  const int n_req = 12;
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < n_req; ++i) {
    GenerationRequest r;
    r.prompt = random_prompt(m, rand_int(2, 70));
    r.max_new_tokens = rand_int(4, 40);
    reqs.push_back(r);
  }
  // A pool for about four of the longest requests: later ones wait for blocks.
  PagedKvCache cache(m, {.block_size = 16, .num_blocks = 28, .dtype = kv});
  Scheduler sched(m, cache, {.max_running = 5, .max_step_tokens = 24});
  for (auto& r : reqs) sched.add(r);
  sched.run();
  EXPECT_TRUE(sched.idle());
  EXPECT_EQ(cache.free_blocks(), cache.num_blocks()) << "every block returned";
  EXPECT_GT(sched.stats().mixed_steps, 0) << "chunked prefill never ran beside decode";
  EXPECT_GT(sched.stats().max_running_seen, 1);
  int ties = 0;
  for (int i = 0; i < n_req; ++i) {
    const GenerationResult& got = sched.result(i);
    ASSERT_TRUE(got.done);
    ASSERT_EQ(static_cast<int64_t>(got.tokens.size()), reqs[static_cast<size_t>(i)].max_new_tokens);
    EXPECT_GE(got.first_token, got.added);
    EXPECT_GE(got.finished, got.first_token);
    const SingleRun ref = single(m, reqs[static_cast<size_t>(i)].prompt, reqs[static_cast<size_t>(i)].max_new_tokens, kv);
    for (size_t j = 0; j < ref.tokens.size(); ++j) {
      if (got.tokens[j] == ref.tokens[j]) continue;
      if (ref.gap[j] < tie) {
        ++ties;
        std::fprintf(stderr, "request %d: step %zu differs at a near-tie (gap %.2e)\n", i, j, ref.gap[j]);
        break;
      }
      ADD_FAILURE() << "request " << i << " step " << j << ": batched " << got.tokens[j] << ", alone " << ref.tokens[j]
                    << " (gap " << ref.gap[j] << ")";
      break;
    }
  }
  EXPECT_LE(ties, max_ties);
}

TEST_P(PagedEngine, ContinuousBatchingGivesEachRequestItsSingleRunTokens) {
  continuous_matches_single(*m, XQ_DTYPE_F32, 1e-3f, 3);
}

TEST_P(PagedEngine, Bf16KvCacheKeepsTheTokensOnDevices) {
  if (m->kernels().host_memory()) GTEST_SKIP() << "host providers keep F32 pools";
  continuous_matches_single(*m, XQ_DTYPE_BF16, 0.1f, 6);
}

TEST_P(PagedEngine, AllocatorReportsCapacityAndRefusesWhatCannotFit) {
  PagedKvCache cache(*m, {.block_size = 16, .num_blocks = 10});
  EXPECT_EQ(cache.blocks_for(1), 1);
  EXPECT_EQ(cache.blocks_for(16), 1);
  EXPECT_EQ(cache.blocks_for(17), 2);
  EXPECT_EQ(cache.max_sequences(40), 3);  // 3 blocks each
  const auto& a = m->arch();
  EXPECT_EQ(cache.bytes_per_block(), static_cast<uint64_t>(2 * a.n_layers * 16 * a.n_kv_heads * a.head_dim * 4));
  PagedSequence s1, s2;
  EXPECT_TRUE(cache.reserve(s1, 100));  // 7 blocks
  EXPECT_EQ(cache.free_blocks(), 3);
  EXPECT_FALSE(cache.reserve(s2, 64));  // 4 blocks: refused, nothing taken
  EXPECT_EQ(cache.free_blocks(), 3);
  EXPECT_TRUE(s2.blocks.empty());
  cache.release(s1);
  EXPECT_EQ(cache.free_blocks(), 10);

  Scheduler sched(*m, cache);
  GenerationRequest too_long;
  too_long.prompt = random_prompt(*m, 10);
  too_long.max_new_tokens = a.max_positions;  // past the context
  try {
    sched.add(too_long);
    ADD_FAILURE() << "a request past the context was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
  }
  GenerationRequest too_big;
  too_big.prompt = random_prompt(*m, 100);
  too_big.max_new_tokens = 100;  // 13 blocks > 10
  try {
    sched.add(too_big);
    ADD_FAILURE() << "a request larger than the pool was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), XQ_ERR_OUT_OF_MEMORY);
    EXPECT_NE(std::string(e.what()).find("KV blocks"), std::string::npos) << e.what();
  }
  GenerationRequest bad_token;
  bad_token.prompt = {1, static_cast<int32_t>(a.vocab)};
  EXPECT_THROW(sched.add(bad_token), Error);
  EXPECT_TRUE(sched.idle());
  EXPECT_EQ(sched.requests(), 0);
  EXPECT_EQ(cache.free_blocks(), 10);
}

INSTANTIATE_TEST_SUITE_P(Providers, PagedEngine, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
