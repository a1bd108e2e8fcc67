// test_cpu_rope_kv_forms.cpp: the appended forms of the `cpu` provider's
// XQ_OP_ROPE_KV (plugins/cpu/src/rope_kv.cpp) through the real plugin,
// against the ops they replace on the same provider, bit for bit (the same
// float formulas), on fresh random rows:
// - paged: src[1] [2, T] (positions, slots), src[2] two paged pools; the
//   reference is ROPE on q and k, then KV_WRITE of k and v into the slots.
//   Several sequences with their blocks scattered over the pool, rows that
//   cross a block boundary, a negative slot (a padding row: no write);
// - q/k norms (Qwen3): src[3] [2, D]; the reference is RMS_NORM of each q
//   and k head, then ROPE; on the contiguous cache and the paged one;
// and bad operands of both forms are refused by name.
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
namespace test_cpu_rope_kv_forms {

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

std::mt19937& rng() {
  static std::mt19937 g(std::random_device{}());
  return g;
}

std::vector<float> random_vec(size_t n, float lo = -2.f, float hi = 2.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng());
  return v;
}

struct Case {
  int64_t H, KVH, D, rot;
  int pairing;
  bool paged, norms;
};

constexpr int64_t kBlocks = 6, kBS = 4;  // a pool of 6 blocks of 4 slots; contiguous caches of 24 rows
constexpr double kEps = 1e-6;

// Three sequences: 2 decode rows (positions 5 and 0) and a 3-row chunk at
// positions 2..4 (crossing a block boundary at 4), a padding row (slot -1;
// position -1 on the contiguous cache).
struct Forms {
  Case c;
  int64_t T = 6, S = kBlocks * kBS, ld;
  std::vector<float> rows, q, kv, norm_w;
  std::vector<int32_t> pos_slots;  // positions [T], then slots [T]

  explicit Forms(const Case& cs) : c(cs) {
    ld = (c.H + 2 * c.KVH) * c.D;
    rows = random_vec(static_cast<size_t>(T * ld));
    q.assign(static_cast<size_t>(T * c.H * c.D), -9.f);
    kv.assign(static_cast<size_t>(2 * S * c.KVH * c.D), 7.f);  // rows not written keep it
    norm_w = random_vec(static_cast<size_t>(2 * c.D), 0.5f, 1.5f);
    const std::vector<int32_t> pos = {5, 0, 2, 3, 4, 0};
    // Sequence 0 owns blocks {3, 1}, sequence 1 block {5}, sequence 2 blocks {0, 4}.
    auto slot = [](const std::vector<int32_t>& blocks, int32_t p) { return blocks[p / kBS] * kBS + p % kBS; };
    const std::vector<int32_t> slots = {slot({3, 1}, 5), slot({5}, 0), slot({0, 4}, 2), slot({0, 4}, 3),
                                        slot({0, 4}, 4), -1};
    pos_slots = pos;
    pos_slots.insert(pos_slots.end(), slots.begin(), slots.end());
    if (!c.paged) {  // contiguous: the rows are the positions; the padding row's is outside the cache
      pos_slots.resize(static_cast<size_t>(T));
      pos_slots.back() = -1;
    }
  }
  const int32_t* pos() const { return pos_slots.data(); }
  int32_t cache_row(int64_t t) const { return c.paged ? pos_slots[static_cast<size_t>(T + t)] : pos_slots[static_cast<size_t>(t)]; }

  xq_op op() {
    xq_op o = sdk::make_op(XQ_OP_ROPE_KV);
    o.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {T, ld}, rows.data());
    if (c.paged) {
      o.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {2, T}, pos_slots.data());
    } else {
      o.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {T}, pos_slots.data());
    }
    o.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {2, S, c.KVH, c.D}, kv.data());
    if (c.norms) {
      o.src[3] = sdk::device_tensor(XQ_DTYPE_F32, {2, c.D}, norm_w.data());
      o.f[2] = kEps;
    }
    o.dst = sdk::device_tensor(XQ_DTYPE_F32, {T, c.H, c.D}, q.data());
    o.i[0] = c.pairing;
    o.i[1] = c.rot;
    o.f[0] = 1000000.0;
    o.f[1] = 1.0;
    return o;
  }

  void run_ok(const xq_op& o) { ASSERT_EQ(cpu().run(o), XQ_OK) << last_error(); }
  void norm(float* data, int64_t heads, const float* w) {
    xq_op o = sdk::make_op(XQ_OP_RMS_NORM);
    o.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {T * heads, c.D}, data);
    o.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {c.D}, w);
    o.dst = o.src[0];
    o.f[0] = kEps;
    run_ok(o);
  }
  void rope(float* data, int64_t heads) {
    xq_op o = sdk::make_op(XQ_OP_ROPE);
    o.dst = sdk::device_tensor(XQ_DTYPE_F32, {T, heads, c.D}, data);
    o.src[0] = o.dst;
    o.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {T}, pos_slots.data());
    o.i[0] = c.pairing;
    o.i[1] = c.rot;
    o.f[0] = 1000000.0;
    o.f[1] = 1.0;
    run_ok(o);
  }
  // The separate ops: q and k out of the rows, [RMS_NORM,] ROPE, then the
  // K/V rows: KV_WRITE into the slots (paged) or copies at the positions.
  void reference(std::vector<float>* q_ref, std::vector<float>* kv_ref) {
    const int64_t D = c.D, qw = c.H * D, kw = c.KVH * D;
    std::vector<float> qq(static_cast<size_t>(T * qw)), kk(static_cast<size_t>(T * kw)), vv(static_cast<size_t>(T * kw));
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(&qq[t * qw], &rows[t * ld], qw * 4);
      std::memcpy(&kk[t * kw], &rows[t * ld + qw], kw * 4);
      std::memcpy(&vv[t * kw], &rows[t * ld + qw + kw], kw * 4);
    }
    if (c.norms) {
      norm(qq.data(), c.H, norm_w.data());
      norm(kk.data(), c.KVH, norm_w.data() + D);
    }
    rope(qq.data(), c.H);
    rope(kk.data(), c.KVH);
    *q_ref = qq;
    *kv_ref = std::vector<float>(kv.size(), 7.f);
    if (c.paged) {
      for (int which = 0; which < 2; ++which) {
        xq_op o = sdk::make_op(XQ_OP_KV_WRITE);
        o.dst = sdk::device_tensor(XQ_DTYPE_F32, {kBlocks, kBS, c.KVH, D}, kv_ref->data() + which * S * kw);
        o.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {T, kw}, which ? vv.data() : kk.data());
        o.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {T}, pos_slots.data() + T);
        run_ok(o);
      }
      return;
    }
    for (int64_t t = 0; t < T; ++t) {
      if (cache_row(t) < 0) continue;
      std::memcpy(&(*kv_ref)[cache_row(t) * kw], &kk[t * kw], kw * 4);
      std::memcpy(&(*kv_ref)[S * kw + cache_row(t) * kw], &vv[t * kw], kw * 4);
    }
  }
};

std::string name(const Case& c) {
  return "H=" + std::to_string(c.H) + " KVH=" + std::to_string(c.KVH) + " D=" + std::to_string(c.D) +
         " rot=" + std::to_string(c.rot) + (c.pairing ? " adjacent" : " neox") + (c.paged ? " paged" : " contiguous") +
         (c.norms ? " q/k norms" : "");
}

}  // namespace

TEST(CpuRopeKvForms, EqualTheSeparateOpsBitForBit) {
  ASSERT_NE(cpu().p, nullptr);
  for (const Case& c : {Case{32, 8, 128, 128, 0, true, false}, Case{5, 1, 64, 32, 1, true, false},
                        Case{16, 8, 128, 128, 0, false, true}, Case{6, 3, 16, 12, 1, false, true},
                        Case{16, 8, 128, 128, 0, true, true}, Case{4, 2, 8, 8, 1, true, true}}) {
    SCOPED_TRACE(name(c));
    Forms f(c);
    std::vector<float> q_ref, kv_ref;
    f.reference(&q_ref, &kv_ref);
    const xq_op o = f.op();
    ASSERT_TRUE(cpu().supports(o)) << last_error();
    f.run_ok(o);
    EXPECT_EQ(0, std::memcmp(f.q.data(), q_ref.data(), q_ref.size() * 4)) << "q";
    EXPECT_EQ(0, std::memcmp(f.kv.data(), kv_ref.data(), kv_ref.size() * 4)) << "K/V";
    size_t untouched = 0;
    for (float v : f.kv) untouched += v == 7.f;
    EXPECT_EQ(untouched, f.kv.size() - 2 * 5 * c.KVH * c.D) << "five rows written per plane (the padding row none)";
  }
}

TEST(CpuRopeKvForms, RefuseBadOperandsByName) {
  auto refused = [](xq_op o, const char* what) {
    EXPECT_FALSE(cpu().supports(o)) << what;
    EXPECT_NE(cpu().run(o), XQ_OK) << what;
    EXPECT_NE(last_error().find("ROPE_KV"), std::string::npos) << last_error();
  };
  Forms f(Case{4, 2, 16, 16, 0, true, true});
  xq_op o = f.op();
  o.src[1].shape[0] = 3;
  refused(o, "three rows of ids");
  o = f.op();
  o.src[1].shape[1] = f.T - 1;
  refused(o, "short slots");
  o = f.op();
  o.src[3].shape[1] = 8;
  refused(o, "norm weights of another head dim");
  o = f.op();
  o.src[3].dtype = XQ_DTYPE_BF16;
  refused(o, "BF16 norm weights");
  o = f.op();
  o.f[2] = -1.0;
  refused(o, "negative eps");
  o = f.op();
  o.src[2].dtype = XQ_DTYPE_BF16;
  refused(o, "BF16 pools on cpu");
}

}  // namespace test_cpu_rope_kv_forms
