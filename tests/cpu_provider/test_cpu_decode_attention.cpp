// test_cpu_decode_attention.cpp: the cpu provider's grouped decode attention
// (plugins/cpu/src/decode_attention.cpp) on fresh random inputs
// (XQUANT_TEST_SEED replays a run), each vector width (4 lanes always, 8
// where the CPU has AVX2), against softmax(q K^T scale) V in double: GQA
// groups of 1 to 8 heads (the value tiles take 3 heads at a time, so 4, 5
// and 8 leave 1 and 2 over), head sizes 64 and 128 and two that are not a
// multiple of the vector width, 1 to 300 keys, keys in one run or in blocks
// of a paged cache. Each head's result must not depend on the group around
// it or on how the keys are split into runs: bit for bit.
#include "decode_attention.hpp"
#include "test_seed.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

// A namespace of its own: the unity build puts this file in one translation
// unit with test_cpu_vector_exp.cpp, whose helpers have the same names.
namespace test_cpu_decode_attention {

using xquant::cpu::decode_attention_group_lanes;
using xquant::cpu::KeyRun;

namespace {

// Keys and values of one KV head inside a [n_keys, KVH, D] cache (the other
// heads' rows interleaved, as the engine lays the cache out).
struct Cache {
  int64_t n_keys, kvh, D;
  std::vector<float> k, v;
  int64_t stride() const { return kvh * D; }
  const float* k_row(int64_t j, int64_t h) const { return k.data() + (j * kvh + h) * D; }
  const float* v_row(int64_t j, int64_t h) const { return v.data() + (j * kvh + h) * D; }
};

Cache random_cache(std::mt19937& rng, int64_t n_keys, int64_t kvh, int64_t D) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  Cache c{n_keys, kvh, D, std::vector<float>(static_cast<size_t>(n_keys * kvh * D)),
          std::vector<float>(static_cast<size_t>(n_keys * kvh * D))};
  for (auto& x : c.k) x = n(rng);
  for (auto& x : c.v) x = n(rng);
  return c;
}

std::vector<double> reference(const float* q, int64_t G, const Cache& c, int64_t kh, float scale) {
  const int64_t D = c.D;
  std::vector<double> out(static_cast<size_t>(G * D), 0.0);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<double> s(static_cast<size_t>(c.n_keys));
    double mx = -INFINITY;
    for (int64_t j = 0; j < c.n_keys; ++j) {
      double d = 0;
      for (int64_t i = 0; i < D; ++i) d += static_cast<double>(q[g * D + i]) * c.k_row(j, kh)[i];
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (auto& x : s) sum += (x = std::exp(x - mx));
    for (int64_t j = 0; j < c.n_keys; ++j)
      for (int64_t i = 0; i < D; ++i) out[g * D + i] += s[j] / sum * c.v_row(j, kh)[i];
  }
  return out;
}

// The cache's keys of head kh as runs of `block` keys (0: one run).
std::vector<KeyRun> runs_of(const Cache& c, int64_t kh, int64_t block) {
  std::vector<KeyRun> runs;
  const int64_t step = block > 0 ? block : c.n_keys;
  for (int64_t j = 0; j < c.n_keys; j += step)
    runs.push_back({c.k_row(j, kh), c.v_row(j, kh), std::min(step, c.n_keys - j)});
  return runs;
}

std::vector<float> attend(int lanes, const float* q, int64_t G, const Cache& c, int64_t kh, float scale,
                          int64_t block) {
  const auto runs = runs_of(c, kh, block);
  std::vector<float> scratch(static_cast<size_t>(G * c.n_keys)), out(static_cast<size_t>(G * c.D), NAN);
  EXPECT_TRUE(decode_attention_group_lanes(lanes, q, G, c.D, scale, runs.data(), static_cast<int64_t>(runs.size()),
                                           c.stride(), scratch.data(), out.data()));
  return out;
}

class DecodeAttentionGroup : public testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (GetParam() == 8 && !__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2: the 8-lane path";
  }
};

TEST_P(DecodeAttentionGroup, MatchesTheDoubleReference) {
  const int lanes = GetParam();
  std::mt19937 rng(xquant::test::seed_from_env_or_fresh("test_cpu_decode_attention"));
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int64_t D : {64, 128, 36, 20})
    for (int64_t G : {1, 2, 3, 4, 5, 8})
      for (int64_t n_keys : {1, 7, 300}) {
        SCOPED_TRACE(testing::Message() << "D " << D << " G " << G << " keys " << n_keys);
        const int64_t kvh = 2, kh = 1;
        const Cache c = random_cache(rng, n_keys, kvh, D);
        std::vector<float> q(static_cast<size_t>(G * D));
        for (auto& x : q) x = n(rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(D));
        const auto want = reference(q.data(), G, c, kh, scale);
        const auto got = attend(lanes, q.data(), G, c, kh, scale, 0);
        double worst = 0, norm = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          worst = std::max(worst, std::abs(got[i] - want[i]));
          norm = std::max(norm, std::abs(want[i]));
        }
        // F32 sums of up to 300 terms of unit size: far inside 1e-5 of the
        // largest output.
        EXPECT_LE(worst, 1e-5 * std::max(norm, 1.0));

        // Paged: the same keys in blocks of 16 and of 5 keys, bit for bit.
        for (int64_t block : {16, 5}) EXPECT_EQ(attend(lanes, q.data(), G, c, kh, scale, block), got);
        // Each head alone gives its bits in the group.
        for (int64_t g = 0; g < G; ++g) {
          const auto alone = attend(lanes, q.data() + g * D, 1, c, kh, scale, 0);
          EXPECT_TRUE(std::equal(alone.begin(), alone.end(), got.begin() + g * D)) << "head " << g;
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Lanes, DecodeAttentionGroup, testing::Values(4, 8),
                         [](const testing::TestParamInfo<int>& i) { return "Lanes" + std::to_string(i.param); });

TEST(DecodeAttentionGroupLanes, AnUnknownWidthWritesNothing) {
  float q[4] = {}, out[4] = {1, 2, 3, 4}, scratch[1];
  const float k[4] = {}, v[4] = {};
  const KeyRun run{k, v, 1};
  EXPECT_FALSE(decode_attention_group_lanes(16, q, 1, 4, 1.0f, &run, 1, 4, scratch, out));
  EXPECT_EQ(out[0], 1.0f);
}

}  // namespace
}  // namespace test_cpu_decode_attention
