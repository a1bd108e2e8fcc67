// test_cpu_adopt.cpp: the cpu provider taking stored packed weights
// ("cpu.int-blocks.v1", the `xq` container's cpu segment) through
// qweight_adopt: the weight reads the given bytes in place (no copy, no
// repack), QMATMUL and DEQUANTIZE give exactly what a weight prepared from
// the canonical tensor gives, and bytes that do not fit are refused with
// XQ_ERR_MALFORMED naming the part.
#include "test_runtime.hpp"
#include "core/runtime.hpp"
#include "cpu.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/cpu_layout.hpp>

#include "../support/quant_description.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

using namespace xquant;
namespace cl = xquant::sdk::cpu_layout;

namespace {

LoadedPlugin& cpu() { return test::quiet_runtime().plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"); }
const xq_kernel_vtable& vt() { return cpu().kernel(); }

test::Canon random_canon(int64_t rows, int64_t cols, uint32_t bits, int64_t group, bool sym, bool act_order,
                         xq_act_scheme act, uint32_t seed) {
  std::mt19937 rng(seed);
  test::Canon c;
  xq_quant_tensor& q = c.q;
  q.bits = bits;
  q.symmetric = sym ? 1 : 0;
  q.strategy = group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group ? group : cols;
  q.n_groups = group ? (cols + group - 1) / group : 1;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = act;
  q.act_bits = act == XQ_ACT_NONE ? 0 : 8;
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::uniform_real_distribution<float> u(0.01f, 0.1f);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  c.scales.resize(static_cast<size_t>(rows * q.n_groups));
  for (auto& s : c.scales) s = u(rng);
  if (!sym) {
    c.zps.resize(c.scales.size());
    for (auto& z : c.zps) z = static_cast<int8_t>(code(rng));
  }
  if (act_order) {
    c.gidx.resize(static_cast<size_t>(cols));
    std::uniform_int_distribution<int> g(0, static_cast<int>(q.n_groups) - 1);
    for (auto& v : c.gidx) v = g(rng);
  }
  c.bind();
  return c;
}

using xquant::test::description_of;  // the description the xq loader hands over: no buffers

// 64-byte aligned bytes, as an mmapped segment is.
struct Aligned {
  std::vector<uint64_t> words;
  explicit Aligned(const std::vector<uint8_t>& b) : words((b.size() + 7) / 8 + 8) {
    std::memcpy(data(), b.data(), b.size());
    size = b.size();
  }
  uint8_t* data() {
    auto p = reinterpret_cast<uintptr_t>(words.data());
    return reinterpret_cast<uint8_t*>((p + 63) / 64 * 64);
  }
  uint64_t size = 0;
};

std::vector<float> run(xq_op_type type, const xq_qweight* w, const std::vector<float>& x, int64_t M,
                       int64_t rows, int64_t cols) {
  std::vector<float> y(static_cast<size_t>(type == XQ_OP_QMATMUL ? M * rows : rows * cols));
  xq_op op = sdk::make_op(type);
  op.qweight = w;
  if (type == XQ_OP_QMATMUL) {
    op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {M, cols}, x.data());
    op.dst = sdk::device_tensor(XQ_DTYPE_F32, {M, rows}, y.data());
  } else {
    op.dst = sdk::device_tensor(XQ_DTYPE_F32, {rows, cols}, y.data());
  }
  EXPECT_EQ(vt().run_op(cpu().state, &op), XQ_OK);
  return y;
}

TEST(CpuAdopt, StoredBytesRunInPlaceExactlyAsPreparedOnes) {
  struct Case {
    int64_t rows, cols;
    uint32_t bits;
    int64_t group;
    bool sym, act_order;
    xq_act_scheme act;
  };
  const Case cases[] = {{48, 96, 4, 32, false, true, XQ_ACT_NONE},  {40, 172, 4, 32, true, false, XQ_ACT_NONE},
                        {33, 70, 8, 0, true, false, XQ_ACT_NONE},   {24, 64, 8, 0, true, false, XQ_ACT_DYNAMIC_TOKEN},
                        {16, 100, 3, 16, false, true, XQ_ACT_NONE}};
  uint32_t seed = 10;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << k.rows << "x" << k.cols << " W" << k.bits << " g" << k.group);
    test::Canon c = random_canon(k.rows, k.cols, k.bits, k.group, k.sym, k.act_order, k.act, ++seed);
    const xq_quant_tensor desc = description_of(c.q);
    ASSERT_STREQ(vt().qweight_packed_layout(cpu().state, &desc), cl::kName);
    Aligned bytes(cl::serialize(cl::pack(c.q)));
    xq_qweight *prepared = nullptr, *adopted = nullptr;
    ASSERT_EQ(vt().qweight_prepare(cpu().state, &c.q, &prepared), XQ_OK);
    ASSERT_EQ(vt().qweight_adopt(cpu().state, &desc, cl::kName, bytes.data(), bytes.size, &adopted), XQ_OK);
    // In place: the weight's codes and scales are the given bytes.
    const cl::Geometry& g = prepared->owned.geo;
    EXPECT_EQ(adopted->codes, bytes.data() + g.codes_at());
    EXPECT_EQ(adopted->scales, reinterpret_cast<const float*>(bytes.data() + g.scales_at()));
    EXPECT_TRUE(adopted->owned.codes.empty());
    std::mt19937 rng(seed);
    std::normal_distribution<float> n;
    for (int64_t M : {1, 7}) {
      std::vector<float> x(static_cast<size_t>(M * k.cols));
      for (auto& v : x) v = n(rng);
      const auto a = run(XQ_OP_QMATMUL, prepared, x, M, k.rows, k.cols);
      const auto b = run(XQ_OP_QMATMUL, adopted, x, M, k.rows, k.cols);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << "M=" << M;
    }
    const auto da = run(XQ_OP_DEQUANTIZE, prepared, {}, 0, k.rows, k.cols);
    const auto db = run(XQ_OP_DEQUANTIZE, adopted, {}, 0, k.rows, k.cols);
    EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size() * 4), 0);
    vt().qweight_release(cpu().state, prepared);
    vt().qweight_release(cpu().state, adopted);
  }
}

TEST(CpuAdopt, RefusesBytesThatDoNotFit) {
  test::Canon c = random_canon(8, 64, 4, 32, false, true, XQ_ACT_NONE, 3);
  const xq_quant_tensor desc = description_of(c.q);
  const std::vector<uint8_t> good = cl::serialize(cl::pack(c.q));
  const cl::Geometry g = cl::pack(c.q).geo;
  auto refused = [&](std::vector<uint8_t> b, const char* layout = cl::kName) {
    Aligned a(b);
    xq_qweight* w = nullptr;
    xq_status s = vt().qweight_adopt(cpu().state, &desc, layout, a.data(), a.size, &w);
    EXPECT_EQ(s == XQ_OK, w != nullptr);
    vt().qweight_release(cpu().state, w);
    return s;
  };
  EXPECT_EQ(refused(good, "cuda.w4a16.v1"), XQ_ERR_UNSUPPORTED);
  EXPECT_EQ(refused(std::vector<uint8_t>(good.begin(), good.end() - 64)), XQ_ERR_MALFORMED);  // truncated
  EXPECT_EQ(refused(std::vector<uint8_t>(good.begin(), good.begin() + 10)), XQ_ERR_MALFORMED);
  auto patched = [&](size_t at, const void* v, size_t n) {
    std::vector<uint8_t> b = good;
    std::memcpy(b.data() + at, v, n);
    return b;
  };
  int32_t perm_dup;  // perm[1] := perm[0]
  std::memcpy(&perm_dup, good.data() + g.perm_at(), 4);
  const int64_t rows9 = 9, gb_bad = 70;  // past cols: group 1 would have negative width
  const uint32_t flags_unknown = 7;
  const float nan = std::nanf("");
  EXPECT_EQ(refused(patched(0, "XQCPU2", 6)), XQ_ERR_MALFORMED);                       // magic
  EXPECT_EQ(refused(patched(8, &flags_unknown, 4)), XQ_ERR_MALFORMED);                 // flags
  EXPECT_EQ(refused(patched(16, &rows9, 8)), XQ_ERR_MALFORMED);                        // header rows
  EXPECT_EQ(refused(patched(64 + 8, &gb_bad, 8)), XQ_ERR_MALFORMED);                   // group ranges out of order
  EXPECT_EQ(refused(patched(g.perm_at() + 4, &perm_dup, 4)), XQ_ERR_MALFORMED);       // perm not a permutation
  EXPECT_EQ(refused(patched(g.scales_at() + 8, &nan, 4)), XQ_ERR_MALFORMED);          // scale not finite
  EXPECT_EQ(refused(good), XQ_OK);
}

}  // namespace
