// paged_rows.hpp: decode rows over a paged KV cache for the split-K
// attention tests (test_split_k_one_pass.cpp, test_split_k_kernels.cpp):
// sequences of given lengths, their blocks shuffled through one pool whose
// spare slots are NaN, PAGED_ATTENTION over them through the provider's ABI,
// and a float64 reference; plus a scoped environment variable (the provider
// reads its attention switches per op).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "attention_ops.hpp"
#include "attention_reference.hpp"

namespace xqtest {

struct Heads {
  int64_t H, KVH, D;
};

// Sequences of `lens[r]` keys each, one decode row per sequence (at
// position lens[r] - 1), their blocks shuffled through one pool whose
// unused slots are NaN. q is F32 [R, H, D]; keys and values [sum lens, KVH, D]
// per sequence in order.
struct PagedRows {
  PagedRows(Heads heads, std::vector<int64_t> row_lens, int64_t block_slots, xq_dtype t)
      : h(heads), lens(std::move(row_lens)), BS(block_slots), pool_t(t) {}
  Heads h;
  std::vector<int64_t> lens;
  int64_t BS;
  xq_dtype pool_t;
  std::vector<float> q, k, v;  // k, v: rounded to pool_t by setup()
  std::vector<int32_t> table;
  int64_t NB = 0, width = 0;
  std::vector<uint8_t> kpool, vpool;

  void setup() {
    const int64_t R = static_cast<int64_t>(lens.size()), row = h.KVH * h.D;
    int64_t total = 0, mb = 0;
    for (int64_t n : lens) total += n, mb = std::max(mb, (n + BS - 1) / BS);
    int64_t blocks = 0;
    for (int64_t n : lens) blocks += (n + BS - 1) / BS;
    NB = blocks + 3;
    width = 1 + mb;
    q = random_values(R * h.H * h.D);
    k = random_values(total * row);
    v = random_values(total * row);
    std::vector<int32_t> order(static_cast<size_t>(NB));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng());
    std::vector<float> kp(static_cast<size_t>(NB * BS * row), NAN), vp(kp.size(), NAN);
    table.assign(static_cast<size_t>(R * width), -1);
    int64_t next = 0, key0 = 0;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t n = lens[static_cast<size_t>(r)];
      table[static_cast<size_t>(r * width)] = static_cast<int32_t>(n - 1);
      for (int64_t b = 0; b < (n + BS - 1) / BS; ++b) table[static_cast<size_t>(r * width + 1 + b)] = order[static_cast<size_t>(next++)];
      for (int64_t j = 0; j < n; ++j) {
        const int64_t slot = static_cast<int64_t>(table[static_cast<size_t>(r * width + 1 + j / BS)]) * BS + j % BS;
        std::copy_n(k.begin() + (key0 + j) * row, row, kp.begin() + slot * row);
        std::copy_n(v.begin() + (key0 + j) * row, row, vp.begin() + slot * row);
      }
      key0 += n;
    }
    kpool = stored(kp, pool_t);
    vpool = stored(vp, pool_t);
    // The keys as the pool holds them, for the reference.
    stored(k, pool_t);
    stored(v, pool_t);
  }

  std::vector<double> reference(double scale) const {
    std::vector<double> out;
    const int64_t row = h.KVH * h.D;
    int64_t key0 = 0;
    for (size_t r = 0; r < lens.size(); ++r) {
      const int64_t n = lens[r];
      const AttentionShape s{1, n - 1, h.H, h.KVH, h.D};
      const std::vector<float> qr(q.begin() + static_cast<int64_t>(r) * h.H * h.D,
                                  q.begin() + static_cast<int64_t>(r + 1) * h.H * h.D);
      const std::vector<float> kr(k.begin() + key0 * row, k.begin() + (key0 + n) * row);
      const std::vector<float> vr(v.begin() + key0 * row, v.begin() + (key0 + n) * row);
      const auto o = reference_attention(s, qr, kr, vr, scale);
      out.insert(out.end(), o.begin(), o.end());
      key0 += n;
    }
    return out;
  }
};

// Device buffers of a PagedRows case and the PAGED_ATTENTION op over them.
struct PagedRun {
  DevBuf dq, dk, dv, dt, dout;
  xq_op op;
  PagedRun(const PagedRows& c, double scale)
      : dq(c.q.size() * 4), dk(c.kpool.size()), dv(c.vpool.size()), dt(c.table.size() * 4), dout(c.q.size() * 4) {
    dq.put(c.q);
    dk.put(c.kpool);
    dv.put(c.vpool);
    dt.put(c.table);
    const int64_t R = static_cast<int64_t>(c.lens.size());
    op = make_op(XQ_OP_PAGED_ATTENTION);
    op.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {R, c.h.H, c.h.D}, dq.p);
    op.src[1] = xquant::sdk::device_tensor(c.pool_t, {c.NB, c.BS, c.h.KVH, c.h.D}, dk.p);
    op.src[2] = xquant::sdk::device_tensor(c.pool_t, {c.NB, c.BS, c.h.KVH, c.h.D}, dv.p);
    op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {R, c.width}, dt.p);
    op.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {R, c.h.H, c.h.D}, dout.p);
    op.f[0] = scale;
  }
  std::vector<float> run() {
    auto& P = Plugin::get();
    dout.poison();
    EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
    return dout.get<float>(dout.n / 4);
  }
};

inline std::string describe(const Heads& h, xq_dtype t, const std::vector<int64_t>& lens) {
  std::string s = "H=" + std::to_string(h.H) + " KVH=" + std::to_string(h.KVH) + " D=" + std::to_string(h.D) +
                  (t == XQ_DTYPE_F32 ? " F32" : " BF16") + " keys=";
  for (int64_t n : lens) s += std::to_string(n) + ",";
  return s;
}

}  // namespace xqtest
