// test_gguf_blocks.cpp: the GGUF block decoders (plugins/gguf/gguf_types.cpp,
// compiled into this test) against independent encoders: ggml's reference
// quantizers for the legacy types and hand-packed K-quant super-blocks with
// random 6-bit scales/mins, each checked element by element against the
// plain formula of ggml's src/ggml-quants.c dequantize_row_*.
#include "block_encoders.hpp"
#include "gguf_types.hpp"

#include <gtest/gtest.h>

#include <random>

using namespace gguf_test;
namespace g = xquant::gguf;

namespace {

std::vector<float> random_values(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  return x;
}

void expect_decodes(uint32_t type, const Encoded& e, const char* what) {
  std::vector<float> y(e.expect.size(), -12345.0f);
  ASSERT_TRUE(g::dequantize_row(type, e.bytes.data(), y.data(), static_cast<int64_t>(y.size()))) << what;
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], e.expect[i]) << what << " element " << i;
}

TEST(GgufBlocks, TypeTable) {
  struct Row { uint32_t id; const char* name; uint32_t bs, ts; };
  const Row rows[] = {{0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},
                      {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},   {12, "Q4_K", 256, 144},
                      {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {30, "BF16", 1, 2}};
  for (const auto& r : rows) {
    const auto* t = g::type_info(r.id);
    ASSERT_NE(t, nullptr) << r.name;
    EXPECT_STREQ(t->name, r.name);
    EXPECT_EQ(t->block_size, r.bs) << r.name;
    EXPECT_EQ(t->type_size, r.ts) << r.name;
    EXPECT_TRUE(t->decodable) << r.name;
  }
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 1000u}) EXPECT_EQ(g::type_info(removed), nullptr) << removed;
  float out[256];
  uint8_t zeros[292] = {};
  EXPECT_FALSE(g::dequantize_row(g::kQ2_K, zeros, out, 256));  // known but not decoded
}

TEST(GgufBlocks, PlainFloats) {
  const uint16_t f16[] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x8000};  // 1, -2, smallest subnormal, 65504, -0
  const float want16[] = {1.0f, -2.0f, 5.9604645e-08f, 65504.0f, -0.0f};
  float y[5];
  ASSERT_TRUE(g::dequantize_row(g::kF16, reinterpret_cast<const uint8_t*>(f16), y, 5));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(y[i], want16[i]) << i;
  EXPECT_TRUE(std::signbit(y[4]));
  const uint16_t bf16[] = {0x3F80, 0xC040, 0x0001};  // 1, -3, a bf16 subnormal (kept, not flushed)
  ASSERT_TRUE(g::dequantize_row(g::kBF16, reinterpret_cast<const uint8_t*>(bf16), y, 3));
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -3.0f);
  EXPECT_EQ(y[2], xquant::sdk::bits_to_f32(0x00010000u));
  const float f32[] = {1.5f, -0.25f};
  ASSERT_TRUE(g::dequantize_row(g::kF32, reinterpret_cast<const uint8_t*>(f32), y, 2));
  EXPECT_EQ(y[0], 1.5f);
  EXPECT_EQ(y[1], -0.25f);
}

TEST(GgufBlocks, LegacyTypesMatchReferenceQuantizers) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 20; ++trial) {
    auto x = random_values(rng, 32 * 8, trial % 2 ? 0.02f : 3.0f);
    if (trial == 3) x.assign(x.size(), 0.0f);  // all-zero blocks: d = 0
    expect_decodes(g::kQ8_0, encode_q8_0(x), "Q8_0");
    expect_decodes(g::kQ4_0, encode_q4_0(x), "Q4_0");
    expect_decodes(g::kQ4_1, encode_q4_1(x), "Q4_1");
    expect_decodes(g::kQ5_0, encode_q5_0(x), "Q5_0");
    expect_decodes(g::kQ5_1, encode_q5_1(x), "Q5_1");
  }
  // And the values are actually close to the input (guards the encoders too).
  auto x = random_values(rng, 32 * 64, 1.0f);
  struct { uint32_t t; Encoded e; float tol; } cases[] = {
      {g::kQ8_0, encode_q8_0(x), 0.02f}, {g::kQ4_0, encode_q4_0(x), 0.6f}, {g::kQ5_1, encode_q5_1(x), 0.15f}};
  for (auto& c : cases) {
    std::vector<float> y(x.size());
    g::dequantize_row(c.t, c.e.bytes.data(), y.data(), static_cast<int64_t>(y.size()));
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], c.tol) << g::type_info(c.t)->name << " " << i;
  }
}

TEST(GgufBlocks, KScaleMinUnpacksEveryValue) {
  // Every 6-bit value in every sub-block position round-trips through the packing.
  for (int v = 0; v < 64; ++v)
    for (int j = 0; j < 8; ++j) {
      int sc[8] = {}, mn[8] = {};
      sc[j] = v;
      mn[j] = 63 - v;
      uint8_t packed[12];
      pack_k_scales(sc, mn, packed);
      for (int k = 0; k < 8; ++k) {
        uint8_t s, m;
        g::k_scale_min(k, packed, &s, &m);
        ASSERT_EQ(s, sc[k]) << "value " << v << " at " << j << " read " << k;
        ASSERT_EQ(m, mn[k]) << "value " << v << " at " << j << " read " << k;
      }
    }
}

TEST(GgufBlocks, KQuantsMatchFormula) {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 50; ++trial) {
    // Several super-blocks in one row so block strides are exercised too.
    Encoded q4, q5, q6;
    for (int b = 0; b < 3; ++b) {
      for (auto [dst, src] : {std::pair{&q4, make_k45(rng, false)}, std::pair{&q5, make_k45(rng, true)},
                              std::pair{&q6, make_q6_k(rng)}}) {
        dst->bytes.insert(dst->bytes.end(), src.bytes.begin(), src.bytes.end());
        dst->expect.insert(dst->expect.end(), src.expect.begin(), src.expect.end());
      }
    }
    expect_decodes(g::kQ4_K, q4, "Q4_K");
    expect_decodes(g::kQ5_K, q5, "Q5_K");
    expect_decodes(g::kQ6_K, q6, "Q6_K");
  }
}

}  // namespace
