// test_cpu_rope_kv.cpp: the `cpu` provider's XQ_OP_ROPE_KV
// (plugins/cpu/src/rope_kv.cpp) through the real plugin, against the ops it
// replaces on the same provider: ROPE on q, the K/V rows copied to the cache
// at their positions, ROPE on the K rows. Bit-identical (the same float
// formulas), on fresh random rows, neox and adjacent pairing, llama3
// frequency divisors, partial rotation, odd head counts, a column slice of a
// wider GEMM output; a position outside the cache writes no K/V row; bad
// operands are refused by name.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cpu_rope_kv {

namespace {

struct CpuPlugin {
  Runtime rt{RuntimeOptions{}};
  LoadedPlugin* p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu");
  xq_status run(const xq_op& op) const { return p->kernel().run_op(p->state, &op); }
  bool supports(const xq_op& op) const { return p->kernel().supports_op(p->state, &op) == 1; }
};
CpuPlugin& cpu() {
  static CpuPlugin f;
  return f;
}

std::vector<float> random_vec(size_t n) {
  static std::mt19937 g(std::random_device{}());
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

struct Case {
  int64_t T, H, KVH, D, rot, S;
  int pairing;  // 0 neox, 1 adjacent
  bool factors;
  int64_t extra_cols;  // q|k|v rows as a column slice of a wider matrix
};

// ROPE_KV's operands and the reference built from ROPE and plain copies.
struct RopeKvRun {
  Case c;
  std::vector<float> rows, q, kv, factors;
  std::vector<int32_t> pos;
  int64_t ld;

  explicit RopeKvRun(const Case& cs) : c(cs) {
    ld = (c.H + 2 * c.KVH) * c.D + c.extra_cols;
    rows = random_vec(static_cast<size_t>(c.T * ld));
    q.assign(static_cast<size_t>(c.T * c.H * c.D), -9.f);
    kv.assign(static_cast<size_t>(2 * c.S * c.KVH * c.D), 7.f);  // a sentinel: rows not written keep it
    for (int64_t t = 0; t < c.T; ++t) pos.push_back(static_cast<int32_t>(c.S - c.T + t));  // the cache's last rows
    for (int64_t i = 0; i < c.rot / 2; ++i) factors.push_back(1.0f + 0.37f * static_cast<float>(i % 5));
  }
  xq_op op() {
    xq_op o = sdk::make_op(XQ_OP_ROPE_KV);
    o.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {c.T, (c.H + 2 * c.KVH) * c.D}, rows.data());
    o.src[0].strides[0] = ld;
    o.src[0].strides[1] = 1;
    o.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {c.T}, pos.data());
    o.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {2, c.S, c.KVH, c.D}, kv.data());
    o.src[2].strides[0] = c.S * c.KVH * c.D;
    o.src[2].strides[1] = c.KVH * c.D;
    o.src[2].strides[2] = c.D;
    o.src[2].strides[3] = 1;
    if (c.factors) o.src[3] = sdk::device_tensor(XQ_DTYPE_F32, {c.rot / 2}, factors.data());
    o.dst = sdk::device_tensor(XQ_DTYPE_F32, {c.T, c.H, c.D}, q.data());
    o.i[0] = c.pairing;
    o.i[1] = c.rot;
    o.f[0] = 500000.0;
    o.f[1] = 1.0;
    return o;
  }
  void rope(float* data, int64_t heads) {
    xq_op o = sdk::make_op(XQ_OP_ROPE);
    o.dst = sdk::device_tensor(XQ_DTYPE_F32, {c.T, heads, c.D}, data);
    o.src[0] = o.dst;
    o.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {c.T}, pos.data());
    if (c.factors) o.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {c.rot / 2}, factors.data());
    o.i[0] = c.pairing;
    o.i[1] = c.rot;
    o.f[0] = 500000.0;
    o.f[1] = 1.0;
    ASSERT_EQ(cpu().run(o), XQ_OK) << last_error();
  }
  // The unfused sequence: q and k copied out of the rows, ROPE on each,
  // k and v written to the cache rows.
  void reference(std::vector<float>* q_ref, std::vector<float>* kv_ref) {
    const int64_t D = c.D, qw = c.H * D, kw = c.KVH * D;
    std::vector<float> qq(c.T * qw), kk(c.T * kw);
    for (int64_t t = 0; t < c.T; ++t) {
      std::memcpy(&qq[t * qw], &rows[t * ld], qw * 4);
      std::memcpy(&kk[t * kw], &rows[t * ld + qw], kw * 4);
    }
    rope(qq.data(), c.H);
    rope(kk.data(), c.KVH);
    *q_ref = qq;
    *kv_ref = std::vector<float>(kv.size(), 7.f);
    for (int64_t t = 0; t < c.T; ++t) {
      if (pos[t] < 0 || pos[t] >= c.S) continue;
      std::memcpy(&(*kv_ref)[pos[t] * kw], &kk[t * kw], kw * 4);
      std::memcpy(&(*kv_ref)[c.S * kw + pos[t] * kw], &rows[t * ld + qw + kw], kw * 4);
    }
  }
};

}  // namespace

TEST(CpuRopeKv, EqualsRopeAndTheCacheAppendsBitForBit) {
  ASSERT_NE(cpu().p, nullptr);
  for (const Case& c : {Case{1, 32, 8, 128, 128, 300, 0, true, 0}, Case{7, 5, 1, 64, 32, 20, 1, false, 3},
                        Case{3, 6, 3, 8, 8, 9, 0, false, 0}, Case{4, 9, 3, 16, 12, 4, 1, true, 16}}) {
    RopeKvRun r(c);
    std::vector<float> q_ref, kv_ref;
    r.reference(&q_ref, &kv_ref);
    ASSERT_EQ(cpu().run(r.op()), XQ_OK) << last_error();
    EXPECT_EQ(0, std::memcmp(r.q.data(), q_ref.data(), q_ref.size() * 4)) << "q, H=" << c.H << " D=" << c.D;
    EXPECT_EQ(0, std::memcmp(r.kv.data(), kv_ref.data(), kv_ref.size() * 4)) << "K/V cache, KVH=" << c.KVH << " D=" << c.D;
  }
}

TEST(CpuRopeKv, APositionOutsideTheCacheWritesNoRow) {
  RopeKvRun r(Case{3, 4, 2, 16, 16, 8, 0, false, 0});
  r.pos = {2, -1, 8};  // only row 0 lands in the cache (S = 8)
  std::vector<float> q_ref, kv_ref;
  r.reference(&q_ref, &kv_ref);
  ASSERT_EQ(cpu().run(r.op()), XQ_OK) << last_error();
  EXPECT_EQ(0, std::memcmp(r.kv.data(), kv_ref.data(), kv_ref.size() * 4));
  EXPECT_EQ(0, std::memcmp(r.q.data(), q_ref.data(), q_ref.size() * 4));
}

TEST(CpuRopeKv, RefusesBadOperandsByName) {
  auto refused = [](xq_op o, const char* what) {
    EXPECT_FALSE(cpu().supports(o)) << what;
    EXPECT_NE(cpu().run(o), XQ_OK) << what;
    EXPECT_NE(last_error().find("ROPE_KV"), std::string::npos) << last_error();
  };
  RopeKvRun r(Case{2, 4, 2, 16, 16, 8, 0, true, 0});
  xq_op o = r.op();
  o.src[0].shape[1] += 1;
  refused(o, "row width");
  o = r.op();
  o.src[2].shape[0] = 3;
  refused(o, "three planes");
  o = r.op();
  o.src[2].shape[3] = 8;
  refused(o, "cache head dim");
  o = r.op();
  o.i[1] = 15;
  refused(o, "odd rotary dims");
  o = r.op();
  o.src[3].shape[0] = 3;
  refused(o, "factors length");
  o = r.op();
  o.src[1].shape[0] = 1;
  refused(o, "positions");
  o = r.op();
  o.dst.dtype = XQ_DTYPE_BF16;
  refused(o, "q dtype");
}

}  // namespace test_cpu_rope_kv
