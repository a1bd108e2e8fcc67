// test_fuse.cpp: stacking quantized Linear weights along rows (engine/fuse.hpp),
// what lets a device provider run q|k|v and gate|up as one GEMM each.
#include "engine/fuse.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace xquant;

namespace {

// A [rows, cols] group-quantized tensor over borrowed vectors, codes = base + i.
struct Part {
  std::vector<int8_t> codes, zps;
  std::vector<float> scales;
  std::vector<int32_t> g_idx;
  xq_quant_tensor t{};
  Part(int64_t rows, int64_t cols, int64_t gs, int8_t base, bool asym) {
    const int64_t groups = (cols + gs - 1) / gs;
    for (int64_t i = 0; i < rows * cols; ++i) codes.push_back(static_cast<int8_t>(base + i % 7));
    for (int64_t i = 0; i < rows * groups; ++i) scales.push_back(0.5f * (base + 1) + 0.01f * i);
    if (asym)
      for (int64_t i = 0; i < rows * groups; ++i) zps.push_back(static_cast<int8_t>(base - i % 3));
    t.struct_size = sizeof(t);
    t.bits = 4;
    t.symmetric = asym ? 0 : 1;
    t.strategy = XQ_STRATEGY_GROUP;
    t.rows = rows, t.cols = cols, t.group_size = gs, t.n_groups = groups;
    t.codes = codes.data();
    t.scales = scales.data();
    t.zero_points = asym ? zps.data() : nullptr;
    t.scale_dtype = XQ_DTYPE_F32;
    t.act_scheme = XQ_ACT_NONE;
  }
};

}  // namespace

TEST(StackRows, StacksCodesScalesAndZeroPointsInOrder) {
  Part q(4, 64, 32, 1, true), k(2, 64, 32, 3, true), v(2, 64, 32, -2, true);
  std::string why;
  auto st = stack_rows({&q.t, &k.t, &v.t}, &why);
  ASSERT_TRUE(st) << why;
  const xq_quant_tensor& s = st->get();
  EXPECT_EQ(s.rows, 8);
  EXPECT_EQ(s.cols, 64);
  EXPECT_EQ(s.n_groups, 2);
  EXPECT_EQ(s.symmetric, 0u);
  std::vector<int8_t> codes(s.codes, s.codes + 8 * 64), want;
  for (const Part* p : {&q, &k, &v}) want.insert(want.end(), p->codes.begin(), p->codes.end());
  EXPECT_EQ(codes, want);
  std::vector<float> scales(s.scales, s.scales + 16), want_s;
  for (const Part* p : {&q, &k, &v}) want_s.insert(want_s.end(), p->scales.begin(), p->scales.end());
  EXPECT_EQ(scales, want_s);
  std::vector<int8_t> zps(s.zero_points, s.zero_points + 16), want_z;
  for (const Part* p : {&q, &k, &v}) want_z.insert(want_z.end(), p->zps.begin(), p->zps.end());
  EXPECT_EQ(zps, want_z);
  EXPECT_EQ(s.g_idx, nullptr);
}

TEST(StackRows, RefusesPartsThatCannotShareOneDescription) {
  std::string why;
  Part a(2, 64, 32, 1, false), b(2, 64, 64, 1, false);
  EXPECT_FALSE(stack_rows({&a.t, &b.t}, &why));
  EXPECT_NE(why.find("group size"), std::string::npos) << why;
  Part c(2, 64, 32, 1, true);
  EXPECT_FALSE(stack_rows({&a.t, &c.t}, &why));
  EXPECT_NE(why.find("symmetry"), std::string::npos) << why;
  Part f(2, 64, 32, 1, false);
  f.t.strategy = XQ_STRATEGY_TENSOR;
  Part g(2, 64, 32, 1, false);
  g.t.strategy = XQ_STRATEGY_TENSOR;
  EXPECT_FALSE(stack_rows({&f.t, &g.t}, &why));
  EXPECT_NE(why.find("per-tensor"), std::string::npos) << why;
}

// Act-order parts stack when they share one column permutation (GPTQ gives
// Linears that read the same input the same g_idx); the stacked tensor owns a
// copy of it. Parts whose g_idx differ, or where one has none, are refused.
TEST(StackRows, ActOrderPartsStackWhenTheyShareOneGIdx) {
  std::vector<int32_t> g_idx(64), other(64);
  for (int i = 0; i < 64; ++i) g_idx[i] = (i * 7 % 64) / 32, other[i] = (i * 5 % 64) / 32;
  Part q(4, 64, 32, 1, false), k(2, 64, 32, 3, false), v(2, 64, 32, -2, false);
  q.g_idx = g_idx, k.g_idx = g_idx, v.g_idx = g_idx;  // equal values in separate buffers, as read from a file
  for (Part* p : {&q, &k, &v}) p->t.g_idx = p->g_idx.data();
  std::string why;
  auto st = stack_rows({&q.t, &k.t, &v.t}, &why);
  ASSERT_TRUE(st) << why;
  const xq_quant_tensor& s = st->get();
  EXPECT_EQ(s.rows, 8);
  ASSERT_NE(s.g_idx, nullptr);
  EXPECT_NE(s.g_idx, q.t.g_idx) << "the stacked tensor must own its g_idx";
  EXPECT_EQ(std::vector<int32_t>(s.g_idx, s.g_idx + 64), g_idx);
  std::vector<int8_t> codes(s.codes, s.codes + 8 * 64), want;
  for (const Part* p : {&q, &k, &v}) want.insert(want.end(), p->codes.begin(), p->codes.end());
  EXPECT_EQ(codes, want);

  Part d(2, 64, 32, 1, false);
  d.g_idx = other;
  d.t.g_idx = d.g_idx.data();
  EXPECT_FALSE(stack_rows({&q.t, &d.t}, &why));
  EXPECT_NE(why.find("act-order g_idx differs"), std::string::npos) << why;
  Part e(2, 64, 32, 1, false);  // no g_idx
  EXPECT_FALSE(stack_rows({&q.t, &e.t}, &why));
  EXPECT_NE(why.find("act-order"), std::string::npos) << why;
  EXPECT_FALSE(stack_rows({&e.t, &q.t}, &why));
}
