// test_paged_attention.cpp: the paged KV cache ops of the `cuda` provider on
// fresh random inputs: KV_WRITE puts every row exactly into its slot and
// nothing else changes; PAGED_ATTENTION over shuffled block tables matches a
// float64 softmax attention over each sequence's keys gathered in order, for
// decode rows and prefill chunks in one launch, GQA groups 1..8, head dims
// 8..128, contexts that take the split-K path (thousands of keys), F32 and
// BF16 pools; the same rows with one block table per sequence (i[1] > 0)
// give bit-identical outputs. Bounds (||gpu - ref|| / ||ref||): F32 pools
// 1e-5; BF16 pools 1e-5 against the reference on the BF16-rounded K/V (the
// rounding is the pool's, the arithmetic stays F32).
#include "test_host.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

using namespace xqtest;

namespace {

xq_op make(xq_op_type t) {
  xq_op op{};
  op.struct_size = sizeof(op);
  op.type = t;
  return op;
}

struct Seq {
  int64_t len;     // keys stored
  int64_t n_rows;  // query rows: the last n_rows positions
};

void check_paged_attention(int64_t H, int64_t KVH, int64_t D, int64_t BS, const std::vector<Seq>& seqs, xq_dtype pool_t) {
  auto& P = Plugin::get();
  int64_t blocks = 0, T = 0, MB = 1;
  for (const auto& s : seqs) {
    blocks += (s.len + BS - 1) / BS;
    T += s.n_rows;
    MB = std::max(MB, (s.len + BS - 1) / BS);
  }
  blocks += 3;  // unused blocks stay in the pool
  std::vector<int32_t> order(static_cast<size_t>(blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng());
  const int64_t row = KVH * D, n_pool = blocks * BS * row;
  std::vector<float> k(static_cast<size_t>(n_pool)), v(static_cast<size_t>(n_pool));
  for (auto& x : k) x = uniform(-2.f, 2.f);
  for (auto& x : v) x = uniform(-2.f, 2.f);
  if (pool_t == XQ_DTYPE_BF16)
    for (auto* a : {&k, &v})
      for (auto& x : *a) x = xquant::sdk::bf16_to_f32(xquant::sdk::f32_to_bf16(x));
  std::vector<float> q(static_cast<size_t>(T * H * D));
  for (auto& x : q) x = uniform(-2.f, 2.f);
  std::vector<int32_t> table(static_cast<size_t>(T * (1 + MB)), -1);
  // The same rows with one table per sequence (i[1] = n_seq): positions,
  // sequence indices, then the tables.
  const int64_t n_seq = static_cast<int64_t>(seqs.size());
  std::vector<int32_t> seq_table(static_cast<size_t>(2 * T + n_seq * MB), -1);
  std::vector<double> ref(static_cast<size_t>(T * H * D));
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  int64_t t = 0, next = 0;
  for (const auto& s : seqs) {
    const int64_t nb = (s.len + BS - 1) / BS;
    std::vector<int32_t> mine(order.begin() + next, order.begin() + next + nb);
    next += nb;
    const int64_t si = &s - seqs.data();
    std::copy(mine.begin(), mine.end(), seq_table.begin() + 2 * T + si * MB);
    for (int64_t r = 0; r < s.n_rows; ++r, ++t) {
      const int64_t p = s.len - s.n_rows + r;
      seq_table[static_cast<size_t>(t)] = static_cast<int32_t>(p);
      seq_table[static_cast<size_t>(T + t)] = static_cast<int32_t>(si);
      table[static_cast<size_t>(t * (1 + MB))] = static_cast<int32_t>(p);
      std::copy(mine.begin(), mine.end(), table.begin() + t * (1 + MB) + 1);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kh = h / (H / KVH);
        std::vector<double> sc(static_cast<size_t>(p + 1));
        double mx = -1e300;
        auto at = [&](int64_t j) { return (static_cast<int64_t>(mine[static_cast<size_t>(j / BS)]) * BS + j % BS) * row + kh * D; };
        for (int64_t j = 0; j <= p; ++j) {
          double d = 0;
          for (int64_t i = 0; i < D; ++i) d += static_cast<double>(q[static_cast<size_t>((t * H + h) * D + i)]) * k[static_cast<size_t>(at(j) + i)];
          sc[static_cast<size_t>(j)] = d * scale;
          mx = std::max(mx, d * scale);
        }
        double sum = 0;
        for (auto& x : sc) sum += (x = std::exp(x - mx));
        for (int64_t i = 0; i < D; ++i) {
          double a = 0;
          for (int64_t j = 0; j <= p; ++j) a += sc[static_cast<size_t>(j)] * v[static_cast<size_t>(at(j) + i)];
          ref[static_cast<size_t>((t * H + h) * D + i)] = a / sum;
        }
      }
    }
  }
  const size_t elem = pool_t == XQ_DTYPE_F32 ? 4 : 2;
  DevBuf dq(q.size() * 4), dk(k.size() * elem), dv(v.size() * elem), dt(table.size() * 4), dout(q.size() * 4);
  dq.put(q);
  dt.put(table);
  if (pool_t == XQ_DTYPE_F32) {
    dk.put(k);
    dv.put(v);
  } else {
    std::vector<uint16_t> kb(k.size()), vb(v.size());
    for (size_t i = 0; i < k.size(); ++i) kb[i] = xquant::sdk::f32_to_bf16(k[i]), vb[i] = xquant::sdk::f32_to_bf16(v[i]);
    dk.put(kb);
    dv.put(vb);
  }
  dout.poison();
  xq_op op = make(XQ_OP_PAGED_ATTENTION);
  op.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {T, H, D}, dq.p);
  op.src[1] = xquant::sdk::device_tensor(pool_t, {blocks, BS, KVH, D}, dk.p);
  op.src[2] = xquant::sdk::device_tensor(pool_t, {blocks, BS, KVH, D}, dv.p);
  op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {T, 1 + MB}, dt.p);
  op.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {T, H, D}, dout.p);
  op.f[0] = scale;
  ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
  XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
  const auto out = dout.get<float>(q.size());
  EXPECT_EQ(count_nan(out), 0u);
  EXPECT_LE(rel_error(out, ref), 1e-5) << "H " << H << " KVH " << KVH << " D " << D << " BS " << BS;

  // One table per sequence: the kernels read the same blocks and positions,
  // so the outputs are bit-identical to the per-row form's.
  DevBuf dst(seq_table.size() * 4);
  dst.put(seq_table);
  dout.poison();
  op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {static_cast<int64_t>(seq_table.size())}, dst.p);
  op.i[1] = n_seq;
  ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
  XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
  EXPECT_EQ(dout.get<float>(q.size()), out) << "per-sequence tables, H " << H << " KVH " << KVH << " D " << D;
  op.i[1] = 0;  // the 1-D form without i[1] is refused, as a provider that predates i[1] refuses it
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 0u);
}

TEST(CudaPagedAttention, MatchesFloat64ReferenceOverShuffledBlocks) {
  XQ_REQUIRE_GPU();
  // Decode rows, a prefill chunk, and one long context (split-K) in one launch.
  const std::vector<Seq> mixed = {{1, 1}, {37, 5}, {300, 1}, {3000, 1}};
  check_paged_attention(32, 8, 128, 16, mixed, XQ_DTYPE_F32);  // Llama-3.1-8B heads
  check_paged_attention(8, 4, 8, 16, {{70, 70}, {5, 1}}, XQ_DTYPE_F32);  // stories260K heads, a whole prompt
  check_paged_attention(4, 4, 64, 8, mixed, XQ_DTYPE_F32);   // no GQA
  check_paged_attention(28, 4, 128, 16, {{500, 3}, {9, 2}}, XQ_DTYPE_F32);  // group of 7
  check_paged_attention(64, 8, 128, 32, {{2500, 1}, {33, 4}}, XQ_DTYPE_F32);  // Qwen3-32B heads
}

TEST(CudaPagedAttention, Bf16PoolsMatchReferenceOnRoundedValues) {
  XQ_REQUIRE_GPU();
  check_paged_attention(32, 8, 128, 16, {{1, 1}, {37, 5}, {4000, 1}}, XQ_DTYPE_BF16);
}

TEST(CudaPagedAttention, KvWriteFillsExactlyItsSlots) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int64_t blocks = 9, BS = 16, KVH = 8, D = 128, row = KVH * D, T = 23, ld = 3 * row;
  for (xq_dtype pt : {XQ_DTYPE_F32, XQ_DTYPE_BF16}) {
    const size_t elem = pt == XQ_DTYPE_F32 ? 4 : 2;
    // Source rows: a column slice (the K third of a q|k|v row), BF16.
    std::vector<float> src(static_cast<size_t>(T * ld));
    std::vector<uint16_t> src_b(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      src_b[i] = xquant::sdk::f32_to_bf16(uniform(-3.f, 3.f));
      src[i] = xquant::sdk::bf16_to_f32(src_b[i]);
    }
    std::vector<int32_t> slots(static_cast<size_t>(blocks * BS));
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng());
    slots.resize(static_cast<size_t>(T));
    slots[4] = -1;  // skipped
    DevBuf ds(src_b.size() * 2), dslot(slots.size() * 4), dpool(static_cast<size_t>(blocks * BS * row) * elem);
    ds.put(src_b);
    dslot.put(slots);
    dpool.poison();
    xq_op op = make(XQ_OP_KV_WRITE);
    op.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_BF16, {T, row}, static_cast<uint16_t*>(ds.p) + row);
    op.src[0].strides[0] = ld;
    op.src[0].strides[1] = 1;
    op.src[1] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {T}, dslot.p);
    op.dst = xquant::sdk::device_tensor(pt, {blocks, BS, KVH, D}, dpool.p);
    ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    const auto pool = dpool.get<uint8_t>(dpool.n);
    std::vector<int> written(static_cast<size_t>(blocks * BS), -1);
    for (int64_t t = 0; t < T; ++t)
      if (slots[static_cast<size_t>(t)] >= 0) written[static_cast<size_t>(slots[static_cast<size_t>(t)])] = static_cast<int>(t);
    size_t bad = 0;
    for (int64_t s = 0; s < blocks * BS; ++s)
      for (int64_t i = 0; i < row; ++i) {
        const size_t at = static_cast<size_t>(s * row + i);
        const int w = written[static_cast<size_t>(s)];
        if (pt == XQ_DTYPE_F32) {
          uint32_t bits;
          std::memcpy(&bits, pool.data() + at * 4, 4);
          float f;
          std::memcpy(&f, &bits, 4);
          const bool ok = w < 0 ? bits == 0xFFFFFFFFu : f == src[static_cast<size_t>(w * ld + row + i)];
          bad += ok ? 0 : 1;
        } else {
          uint16_t b;
          std::memcpy(&b, pool.data() + at * 2, 2);
          const bool ok = w < 0 ? b == 0xFFFFu : b == src_b[static_cast<size_t>(w * ld + row + i)];
          bad += ok ? 0 : 1;
        }
      }
    EXPECT_EQ(bad, 0u) << "pool dtype " << static_cast<int>(pt);
  }
}

TEST(CudaPagedAttention, RefusesMismatchedShapes) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  float dummy[4];
  int32_t idummy[4];
  xq_op op = make(XQ_OP_PAGED_ATTENTION);
  op.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {2, 8, 64}, dummy);
  op.src[1] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {4, 16, 3, 64}, dummy);  // 8 heads over 3 kv heads
  op.src[2] = op.src[1];
  op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {2, 3}, idummy);
  op.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {2, 8, 64}, dummy);
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 0u);
  EXPECT_NE(P.vt->run_op(P.state, &op), XQ_OK);
  EXPECT_NE(g_last_error.find("kv heads"), std::string::npos) << g_last_error;
}

}  // namespace
