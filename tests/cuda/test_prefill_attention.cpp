// test_prefill_attention.cpp: PAGED_ATTENTION's tensor-core prefill path
// (plugins/cuda/src/prefill_attention.cu) on fresh random inputs, BF16
// pools over shuffled block tables. Each launch holds a decode row of
// another sequence, the prefill chunk (T rows at positions p0..p0+T-1, so
// its 64-row tiles straddle the chunk's edges) and one more decode row.
//
// Two checks per case:
//  * the kernel alone (xqcuda::prefill_attention) on a poisoned output: the
//    tiles it marks are exactly those whose rows are one sequence at
//    consecutive positions (>= 16 rows); their rows match a float64 softmax
//    attention over the gathered keys; every other row is left untouched;
//  * the op (run_op, prefill path + decode kernel for the rest): every row
//    matches the reference.
// Both with the per-row block tables and with one table per sequence
// (i[1] > 0): the kernel alone meets the same checks, the op gives the same
// bits.
// Bounds (||gpu - ref|| / ||ref|| over a set of rows): the reference runs
// on the BF16-rounded K/V; the decode kernel keeps q and P in F32 (1e-5), the
// tensor-core kernel rounds q * scale and P to BF16 (8 significant bits,
// relative rounding <= 2^-9 each), which moves outputs by about 3e-3 here;
// 1.5e-2 leaves margin while a wrong key, mask or block gives O(1) errors.
#include "test_host.hpp"
#include "prefill_problem.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "event_timer.hpp"
#include "prefill_attention.hpp"

using namespace xqtest;

namespace {

constexpr double kTensorCoreBound = 1.5e-2;
constexpr double kDecodeBound = 1e-5;

// The tiles the kernel must take: 64 rows (or the last, shorter tile) of
// one sequence at consecutive positions, at least 16 of them.
std::vector<int32_t> expected_tiles(const Problem& P) {
  const int64_t tiles = (P.T + xqcuda::kPrefillTileRows - 1) / xqcuda::kPrefillTileRows;
  std::vector<int32_t> f(static_cast<size_t>(tiles));
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t r0 = i * xqcuda::kPrefillTileRows, n = std::min(xqcuda::kPrefillTileRows, P.T - r0);
    bool one = n >= xqcuda::kPrefillMinRows;
    for (int64_t r = r0 + 1; r < r0 + n; ++r) one = one && P.seq_of_row[static_cast<size_t>(r)] == P.seq_of_row[static_cast<size_t>(r0)];
    f[static_cast<size_t>(i)] = one ? 1 : 0;
  }
  return f;
}

void check_case(int64_t H, int64_t KVH, int64_t D, int64_t BS, int64_t T, int64_t p0, xq_dtype out_t = XQ_DTYPE_F32) {
  SCOPED_TRACE(testing::Message() << "H " << H << " KVH " << KVH << " D " << D << " BS " << BS << " T " << T << " p0 " << p0);
  auto& pl = Plugin::get();
  const Problem P = build(H, KVH, D, BS, {{40, 1}, {p0, T}, {5, 1}});
  const int64_t ld = 1 + P.MB;
  DevBuf dq(P.q.size() * 4), dk(P.kb.size() * 2), dv(P.vb.size() * 2), dt(P.table.size() * 4),
      dout(P.q.size() * 4), dflags(xqcuda::prefill_attention_workspace(P.T));
  dq.put(P.q);
  dk.put(P.kb);
  dv.put(P.vb);
  dt.put(P.table);
  const std::vector<int32_t> want = expected_tiles(P);
  auto in_prefill_tile = [&](int64_t t) { return want[static_cast<size_t>(t / xqcuda::kPrefillTileRows)] != 0; };

  // The kernel alone, with each split of the query heads over CTAs.
  xqcuda::PagedAttentionArgs a;
  a.q = static_cast<const float*>(dq.p);
  a.kpool = dk.p;
  a.vpool = dv.p;
  a.pool_type = xqcuda::DType::BF16;
  a.table = static_cast<const int32_t*>(dt.p);
  a.table_ld = ld;
  a.T = P.T, a.H = H, a.KVH = KVH, a.D = D, a.BS = BS;
  a.max_keys = P.MB * BS;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  a.out = dout.p;
  a.out_type = xqcuda::DType::F32;
  DevBuf dst(P.seq_table.size() * 4);
  dst.put(P.seq_table);
  for (const bool per_seq : {false, true})
  for (const auto cta : {xqcuda::PrefillCta::Group, xqcuda::PrefillCta::PerHead}) {
  SCOPED_TRACE(cta == xqcuda::PrefillCta::Group ? "one CTA per GQA group" : "one CTA per query head");
  SCOPED_TRACE(per_seq ? "one block table per sequence" : "one block table per row");
  a.table = static_cast<const int32_t*>(per_seq ? dst.p : dt.p);
  a.table_ld = per_seq ? P.MB : ld;
  a.n_seq = per_seq ? 3 : 0;
  dout.poison();
  // The provider's uploads ran on its stream; the kernel runs on the legacy one.
  ASSERT_EQ(pl.vt->synchronize(pl.state), XQ_OK);
  ASSERT_EQ(xqcuda::prefill_attention(a, static_cast<int32_t*>(dflags.p), nullptr, cta), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(dflags.get<int32_t>(want.size()), want);
  const auto alone = dout.get<float>(P.q.size());
  EXPECT_LE(rel_error_rows(P, alone, in_prefill_tile), kTensorCoreBound);
  size_t finite_in_tiles = 0, touched_elsewhere = 0;
  const int64_t per_row = H * D;
  for (int64_t t = 0; t < P.T; ++t)
    for (int64_t i = 0; i < per_row; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &alone[static_cast<size_t>(t * per_row + i)], 4);
      if (in_prefill_tile(t)) finite_in_tiles += std::isfinite(alone[static_cast<size_t>(t * per_row + i)]) ? 1 : 0;
      else touched_elsewhere += bits != 0xFFFFFFFFu ? 1 : 0;
    }
  size_t tile_rows = 0;
  for (int64_t t = 0; t < P.T; ++t) tile_rows += in_prefill_tile(t) ? 1 : 0;
  EXPECT_EQ(finite_in_tiles, tile_rows * static_cast<size_t>(per_row));
  EXPECT_EQ(touched_elsewhere, 0u);
  }

  // The op: the prefill path and the decode kernel together.
  dout.poison();
  xq_op op{};
  op.struct_size = sizeof(op);
  op.type = XQ_OP_PAGED_ATTENTION;
  op.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {P.T, H, D}, dq.p);
  op.src[1] = xquant::sdk::device_tensor(XQ_DTYPE_BF16, {P.blocks, BS, KVH, D}, dk.p);
  op.src[2] = xquant::sdk::device_tensor(XQ_DTYPE_BF16, {P.blocks, BS, KVH, D}, dv.p);
  op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {P.T, ld}, dt.p);
  op.dst = xquant::sdk::device_tensor(out_t, {P.T, H, D}, dout.p);
  op.f[0] = a.scale;
  op.i[0] = T;  // the engine's hint: the longest chunk
  ASSERT_EQ(pl.vt->supports_op(pl.state, &op), 1u);
  XQ_OK_OR_FAIL(pl.vt->run_op(pl.state, &op));
  std::vector<float> both;
  if (out_t == XQ_DTYPE_F32) {
    both = dout.get<float>(P.q.size());
  } else {
    for (uint16_t b : dout.get<uint16_t>(P.q.size())) both.push_back(xquant::sdk::bf16_to_f32(b));
  }
  EXPECT_EQ(count_nan(both), 0u);
  EXPECT_LE(rel_error_rows(P, both, in_prefill_tile), kTensorCoreBound);
  // A BF16 dst rounds the decode kernel's rows too (2^-9 relative).
  const double decode_bound = out_t == XQ_DTYPE_F32 ? kDecodeBound : 5e-3;
  EXPECT_LE(rel_error_rows(P, both, [&](int64_t t) { return !in_prefill_tile(t); }), decode_bound);

  // The op with one table per chunk (i[1] = 3): the same tiles, blocks and
  // positions, so the same bits.
  dout.poison();
  op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {static_cast<int64_t>(P.seq_table.size())}, dst.p);
  op.i[1] = 3;
  ASSERT_EQ(pl.vt->supports_op(pl.state, &op), 1u);
  XQ_OK_OR_FAIL(pl.vt->run_op(pl.state, &op));
  if (out_t == XQ_DTYPE_F32) {
    EXPECT_EQ(dout.get<float>(P.q.size()), both) << "per-sequence tables";
  } else {
    std::vector<float> seq_out;
    for (uint16_t b : dout.get<uint16_t>(P.q.size())) seq_out.push_back(xquant::sdk::bf16_to_f32(b));
    EXPECT_EQ(seq_out, both) << "per-sequence tables";
  }
}

TEST(CudaPrefillAttention, MatchesFloat64ReferenceAcrossChunkShapes) {
  XQ_REQUIRE_GPU();
  // T x start position, each with a GQA group (1, 2, 3, 4, 5, 7, 8, 16: every
  // CTA shape, 64 positions of one head down to 8 positions of 16 heads) and
  // head dim (64, 128).
  struct C { int64_t T, p0, group, D; };
  const C cases[] = {{1, 0, 1, 64},     {1, 300, 8, 128},  {17, 0, 4, 128},  {17, 300, 7, 64},
                     {64, 0, 7, 128},   {64, 300, 1, 128}, {200, 0, 8, 64},  {200, 300, 4, 128},
                     {1000, 0, 8, 128}, {1000, 300, 7, 128}, {200, 300, 1, 64}, {64, 0, 16, 64},
                     {300, 50, 2, 128}, {100, 20, 3, 64},  {150, 0, 5, 128},  {129, 700, 16, 128}};
  for (const auto& c : cases) check_case(2 * c.group, 2, c.D, 16, c.T, c.p0);
}

TEST(CudaPrefillAttention, SmallBlocksAndBf16Output) {
  XQ_REQUIRE_GPU();
  check_case(8, 2, 128, 8, 130, 77, XQ_DTYPE_BF16);  // 8-slot blocks, a chunk starting mid-block
}

}  // namespace

namespace {

// Attention alone at the benchmark's shape (one 8192-row prefill chunk,
// Llama-3.1-8B heads: 32 over 8, D 128, BF16 pools): the tensor-core kernel
// and the decode-style kernel on the same inputs, device time by CUDA
// events. Prints TFLOP/s over the causal half (4 * T^2 / 2 * H * D FLOP);
// asserts nothing about speed. Run by scripts/gpu-prefill-check.sh with
// --gtest_also_run_disabled_tests.
TEST(CudaPrefillAttention, DISABLED_Speed8192Rows) {
  XQ_REQUIRE_GPU();
  auto& pl = Plugin::get();
  const int64_t T = 8192, H = 32, KVH = 8, D = 128, BS = 16, nb = T / BS, ld = 1 + nb;
  std::vector<uint16_t> pool(static_cast<size_t>(nb * BS * KVH * D));
  for (auto& x : pool) x = xquant::sdk::f32_to_bf16(uniform(-2.f, 2.f));
  std::vector<float> q(static_cast<size_t>(T * H * D));
  for (auto& x : q) x = uniform(-2.f, 2.f);
  std::vector<int32_t> order(static_cast<size_t>(nb)), table(static_cast<size_t>(T * ld));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng());
  for (int64_t t = 0; t < T; ++t) {
    table[static_cast<size_t>(t * ld)] = static_cast<int32_t>(t);
    std::copy(order.begin(), order.end(), table.begin() + t * ld + 1);
  }
  DevBuf dq(q.size() * 4), dk(pool.size() * 2), dv(pool.size() * 2), dt(table.size() * 4), dout(q.size() * 4),
      dflags(xqcuda::prefill_attention_workspace(T));
  dq.put(q);
  dk.put(pool);
  dv.put(pool);
  dt.put(table);
  ASSERT_EQ(pl.vt->synchronize(pl.state), XQ_OK);
  xqcuda::PagedAttentionArgs a;
  a.q = static_cast<const float*>(dq.p);
  a.kpool = dk.p;
  a.vpool = dv.p;
  a.pool_type = xqcuda::DType::BF16;
  a.table = static_cast<const int32_t*>(dt.p);
  a.table_ld = ld;
  a.T = T, a.H = H, a.KVH = KVH, a.D = D, a.BS = BS, a.max_keys = nb * BS;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  a.out = dout.p;
  a.out_type = xqcuda::DType::BF16;
  EventTimer timer;
  auto time_ms = [&](int reps, auto&& launch) { return timer.us_per_call(launch, 1, reps) / 1e3; };
  const double flop = 4.0 * static_cast<double>(T) * static_cast<double>(T) / 2 * H * D;
  auto tensor_core = [&](xqcuda::PrefillCta cta) {
    return time_ms(10, [&] {
      ASSERT_EQ(xqcuda::prefill_attention(a, static_cast<int32_t*>(dflags.p), nullptr, cta), cudaSuccess);
    });
  };
  const double tc = tensor_core(xqcuda::PrefillCta::Group), per_head = tensor_core(xqcuda::PrefillCta::PerHead);
  const double dk_ms = time_ms(2, [&] { ASSERT_EQ(xqcuda::paged_attention(a, 1, nullptr, nullptr), cudaSuccess); });
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::printf("prefill attention 8192 rows, 32/8 heads, D 128, BF16 pools: tensor-core %.3f ms (%.1f TFLOP/s) "
              "[one CTA per query head %.3f ms (%.1f TFLOP/s), %.2fx], "
              "decode-style %.3f ms (%.1f TFLOP/s), ratio %.1fx\n",
              tc, flop / tc / 1e9, per_head, flop / per_head / 1e9, per_head / tc, dk_ms, flop / dk_ms / 1e9,
              dk_ms / tc);
}

}  // namespace
