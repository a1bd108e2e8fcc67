// prefill_problem.hpp: a PAGED_ATTENTION launch of prompt chunks and decode
// rows on fresh random inputs, for the prefill tests (test_prefill_attention.cpp:
// our tensor-core path; test_flashinfer_prefill.cpp: FlashInfer's): BF16
// pools over shuffled blocks (two left unused), each chunk's rows in the
// per-row table form [T, 1 + MB] and the per-sequence form
// [2T + chunks * MB] (i[1] = chunks), and a float64 softmax attention over
// each row's keys on the BF16-rounded K/V.
#pragma once

#include "test_host.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace xqtest {

struct Chunk {
  int64_t p0;  // position of the first query row
  int64_t n;   // query rows; the sequence holds p0 + n keys
};

struct Problem {
  int64_t H = 0, KVH = 0, D = 0, BS = 0, T = 0, MB = 1, blocks = 0;
  std::vector<float> q, k, v;       // k, v BF16-rounded
  std::vector<uint16_t> kb, vb;     // the pools
  std::vector<int32_t> table;       // [T, 1 + MB]
  std::vector<int32_t> seq_table;   // [2T + chunks * MB]: one table per chunk (i[1] > 0)
  std::vector<int> seq_of_row;      // which chunk each row belongs to
  std::vector<double> ref;          // [T, H, D]
};

inline Problem build(int64_t H, int64_t KVH, int64_t D, int64_t BS, const std::vector<Chunk>& chunks) {
  Problem P;
  P.H = H, P.KVH = KVH, P.D = D, P.BS = BS;
  for (const auto& c : chunks) {
    const int64_t nb = (c.p0 + c.n + BS - 1) / BS;
    P.blocks += nb;
    P.T += c.n;
    P.MB = std::max(P.MB, nb);
  }
  P.blocks += 2;  // unused blocks stay in the pool
  std::vector<int32_t> order(static_cast<size_t>(P.blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng());
  const int64_t row = KVH * D, n_pool = P.blocks * BS * row;
  P.kb.resize(static_cast<size_t>(n_pool));
  P.vb.resize(static_cast<size_t>(n_pool));
  P.k.resize(P.kb.size());
  P.v.resize(P.vb.size());
  for (size_t i = 0; i < P.kb.size(); ++i) {
    P.kb[i] = xquant::sdk::f32_to_bf16(uniform(-2.f, 2.f));
    P.vb[i] = xquant::sdk::f32_to_bf16(uniform(-2.f, 2.f));
    P.k[i] = xquant::sdk::bf16_to_f32(P.kb[i]);
    P.v[i] = xquant::sdk::bf16_to_f32(P.vb[i]);
  }
  P.q.resize(static_cast<size_t>(P.T * H * D));
  for (auto& x : P.q) x = uniform(-2.f, 2.f);
  const int64_t ld = 1 + P.MB;
  P.table.assign(static_cast<size_t>(P.T * ld), -1);
  P.seq_table.assign(static_cast<size_t>(2 * P.T + static_cast<int64_t>(chunks.size()) * P.MB), -1);
  P.ref.assign(static_cast<size_t>(P.T * H * D), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  int64_t t = 0, next = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const auto& c = chunks[ci];
    const int64_t nb = (c.p0 + c.n + BS - 1) / BS;
    const std::vector<int32_t> mine(order.begin() + next, order.begin() + next + nb);
    next += nb;
    std::copy(mine.begin(), mine.end(), P.seq_table.begin() + 2 * P.T + static_cast<int64_t>(ci) * P.MB);
    auto at = [&](int64_t j, int64_t kh) {
      return static_cast<size_t>((static_cast<int64_t>(mine[static_cast<size_t>(j / BS)]) * BS + j % BS) * row + kh * D);
    };
    for (int64_t r = 0; r < c.n; ++r, ++t) {
      const int64_t p = c.p0 + r;
      P.seq_of_row.push_back(static_cast<int>(ci));
      P.table[static_cast<size_t>(t * ld)] = static_cast<int32_t>(p);
      P.seq_table[static_cast<size_t>(t)] = static_cast<int32_t>(p);
      P.seq_table[static_cast<size_t>(P.T + t)] = static_cast<int32_t>(ci);
      std::copy(mine.begin(), mine.end(), P.table.begin() + t * ld + 1);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kh = h / (H / KVH);
        const float* qh = P.q.data() + (t * H + h) * D;
        std::vector<double> sc(static_cast<size_t>(p + 1));
        double mx = -1e300;
        for (int64_t j = 0; j <= p; ++j) {
          double d = 0;
          const float* kj = P.k.data() + at(j, kh);
          for (int64_t i = 0; i < D; ++i) d += static_cast<double>(qh[i]) * kj[i];
          sc[static_cast<size_t>(j)] = d * scale;
          mx = std::max(mx, d * scale);
        }
        double sum = 0;
        for (auto& x : sc) sum += (x = std::exp(x - mx));
        double* o = P.ref.data() + (t * H + h) * D;
        for (int64_t j = 0; j <= p; ++j) {
          const double w = sc[static_cast<size_t>(j)] / sum;
          const float* vj = P.v.data() + at(j, kh);
          for (int64_t i = 0; i < D; ++i) o[i] += w * vj[i];
        }
      }
    }
  }
  return P;
}

// ||out - ref|| / ||ref|| over the rows where `take(row)`.
template <class Take>
double rel_error_rows(const Problem& P, const std::vector<float>& out, Take take) {
  std::vector<float> o;
  std::vector<double> r;
  const int64_t per_row = P.H * P.D;
  for (int64_t t = 0; t < P.T; ++t)
    if (take(t)) {
      o.insert(o.end(), out.begin() + t * per_row, out.begin() + (t + 1) * per_row);
      r.insert(r.end(), P.ref.begin() + t * per_row, P.ref.begin() + (t + 1) * per_row);
    }
  return o.empty() ? 0.0 : rel_error(o, r);
}

}  // namespace xqtest
