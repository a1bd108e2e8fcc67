// test_flashinfer_prefill.cpp: PAGED_ATTENTION on FlashInfer's FA2 prefill
// kernel (plugins/cuda/src/flashinfer_prefill.hpp), reached as the engine
// reaches it: xq_kernel_vtable.plan_paged_step with each sequence's rows and
// keys (seqs > 0), then run_op with one block table per sequence (i[1]). On
// fresh random inputs (prefill_problem.hpp: shuffled blocks, float64
// reference): prompt chunks at position 0 and mid-sequence, alone or beside
// decode rows of other sequences, GQA groups 1 to 8, 8- and 16-slot blocks,
// each of its three query tiles (16, 64, 128 rows) and a long sequence's
// chunk (its split-KV path and merge). Each planned op must match the reference and
// differ in bits from the same op without a plan (so the planned kernel ran,
// not ours); an op the plan does not describe, and every op after the plan
// is dropped or refused, runs ours and still matches.
// Bound: 1.5e-2 relative, as our tensor-core path's (test_prefill_attention.cpp):
// q is rounded to BF16 before the kernel, which rounds P to BF16, each <= 2^-9
// relative, and the output is BF16.
#include "test_host.hpp"
#include "flashinfer_plan.hpp"
#include "prefill_problem.hpp"

#include <xquant/sdk/half.hpp>

#include <cmath>

using namespace xqtest;

namespace {

constexpr double kBound = 1.5e-2;

// A problem's device copies and its PAGED_ATTENTION op in the per-sequence
// form, BF16 output.
struct PrefillRun {
  DevBuf dq, dk, dv, dt, dout;
  xq_op op{};
  explicit PrefillRun(const Problem& P)
      : dq(P.q.size() * 4), dk(P.kb.size() * 2), dv(P.vb.size() * 2), dt(P.seq_table.size() * 4),
        dout(P.q.size() * 2) {
    dq.put(P.q);
    dk.put(P.kb);
    dv.put(P.vb);
    dt.put(P.seq_table);
    op.struct_size = sizeof(op);
    op.type = XQ_OP_PAGED_ATTENTION;
    op.src[0] = xquant::sdk::device_tensor(XQ_DTYPE_F32, {P.T, P.H, P.D}, dq.p);
    op.src[1] = xquant::sdk::device_tensor(XQ_DTYPE_BF16, {P.blocks, P.BS, P.KVH, P.D}, dk.p);
    op.src[2] = xquant::sdk::device_tensor(XQ_DTYPE_BF16, {P.blocks, P.BS, P.KVH, P.D}, dv.p);
    op.src[3] = xquant::sdk::device_tensor(XQ_DTYPE_I32, {static_cast<int64_t>(P.seq_table.size())}, dt.p);
    op.dst = xquant::sdk::device_tensor(XQ_DTYPE_BF16, {P.T, P.H, P.D}, dout.p);
    op.f[0] = 1.0 / std::sqrt(static_cast<double>(P.D));
    op.i[1] = static_cast<int64_t>(P.seq_table.size() - 2 * P.T) / P.MB;
  }
  std::vector<float> run() {
    auto& pl = Plugin::get();
    dout.poison();
    EXPECT_EQ(pl.vt->supports_op(pl.state, &op), 1u);
    EXPECT_EQ(pl.vt->run_op(pl.state, &op), XQ_OK) << g_last_error;
    std::vector<float> f;
    for (uint16_t b : dout.get<uint16_t>(static_cast<size_t>(op.dst.shape[0] * op.dst.shape[1] * op.dst.shape[2])))
      f.push_back(xquant::sdk::bf16_to_f32(b));
    return f;
  }
};

// plan_paged_step describing `chunks` (the problem's sequences), or none.
uint32_t plan(const Problem& P, const std::vector<Chunk>& chunks, bool describe = true) {
  auto& pl = Plugin::get();
  std::vector<int32_t> rows, lens;
  for (const auto& c : chunks) rows.push_back(static_cast<int32_t>(c.n)), lens.push_back(static_cast<int32_t>(c.p0 + c.n));
  xq_paged_plan p{};
  p.struct_size = sizeof(p);
  p.seqs = describe ? static_cast<int64_t>(chunks.size()) : 0;
  p.seq_rows = describe ? rows.data() : nullptr;
  p.seq_kv_lens = describe ? lens.data() : nullptr;
  p.table_ld = P.MB;
  p.block_size = P.BS;
  p.heads = P.H;
  p.kv_heads = P.KVH;
  p.head_dim = P.D;
  p.kv_dtype = XQ_DTYPE_BF16;
  EXPECT_EQ(pl.vt->plan_paged_step(pl.state, &p), XQ_OK) << g_last_error;
  return p.taken;
}

std::string describe(const Problem& P, const std::vector<Chunk>& chunks) {
  std::string s = "H " + std::to_string(P.H) + " KVH " + std::to_string(P.KVH) + " BS " + std::to_string(P.BS) + ", chunks";
  for (const auto& c : chunks) s += " " + std::to_string(c.n) + "@" + std::to_string(c.p0);
  return s;
}

// Planned: matches the reference and is not our kernels' output; dropped:
// ours, matching too.
void check_planned(int64_t H, int64_t KVH, int64_t BS, const std::vector<Chunk>& chunks) {
  const Problem P = build(H, KVH, 128, BS, chunks);
  SCOPED_TRACE(describe(P, chunks));
  PrefillRun r(P);
  ASSERT_EQ(plan(P, chunks), 1u);
  const auto planned = r.run();
  EXPECT_EQ(count_nan(planned), 0u);
  EXPECT_LE(rel_error_rows(P, planned, [](int64_t) { return true; }), kBound);
  ASSERT_EQ(plan(P, chunks, /*describe=*/false), 0u);
  const auto ours = r.run();
  EXPECT_LE(rel_error_rows(P, ours, [](int64_t) { return true; }), kBound);
  EXPECT_NE(planned, ours) << "the planned op gave our kernels' bits: FlashInfer's kernel did not run";
}

}  // namespace

TEST(CudaFlashInferPrefill, MatchesTheReferenceAcrossChunksGroupsAndBlocks) {
  REQUIRE_FLASHINFER();
  check_planned(8, 2, 16, {{0, 1000}});                           // a prompt from position 0, group 4
  check_planned(16, 2, 16, {{40, 1}, {300, 200}, {5, 1}});        // a chunk mid-sequence between decode rows, group 8
  check_planned(2, 2, 16, {{300, 17}, {0, 64}});                  // group 1, two chunks
  check_planned(4, 2, 8, {{77, 130}, {9, 1}});                    // group 2, 8-slot blocks, a chunk starting mid-block
  check_planned(12, 4, 16, {{700, 129}, {3, 1}, {0, 33}});        // group 3
}

TEST(CudaFlashInferPrefill, ManyShortChunksAndALongSequence) {
  REQUIRE_FLASHINFER();
  // Its query tile follows the step's average (row, head) pairs a sequence
  // (scheduler.cuh PrefillSplitQOKVIndptr, utils.cuh FA2DetermineCtaTileQ:
  // 128 above 64, 64 above 16, else 16). 48 sequences of 1 to 24 rows at
  // scattered positions, decode rows among them: ~9 rows x group 4, its
  // 64 tile. 40 decode rows beside one 20-row chunk: 60 x 4 / 41 = 5, its
  // 16 tile (a serving step of mostly decode rows).
  std::vector<Chunk> many;
  for (int i = 0; i < 48; ++i) many.push_back({uniform_int(0, 400), i % 3 == 0 ? 1 : uniform_int(2, 24)});
  check_planned(8, 2, 16, many);
  std::vector<Chunk> mostly_decode;
  for (int i = 0; i < 40; ++i) mostly_decode.push_back({uniform_int(0, 600), 1});
  mostly_decode.push_back({300, 20});
  check_planned(8, 2, 16, mostly_decode);
  // One short chunk of a long sequence: few query tiles over 6000 keys, so
  // its plan splits the keys over blocks and merges their partial outputs.
  check_planned(8, 2, 16, {{6000, 40}});
}

TEST(CudaFlashInferPrefill, AnOpThePlanDoesNotDescribeRunsOurs) {
  REQUIRE_FLASHINFER();
  const std::vector<Chunk> chunks = {{40, 1}, {100, 150}};
  const Problem P = build(8, 2, 128, 16, chunks);
  PrefillRun r(P);
  ASSERT_EQ(plan(P, chunks, /*describe=*/false), 0u);
  const auto ours = r.run();
  // A plan of other rows (one more decode row), then F32 output under the
  // right plan: neither is the planned step, both run ours, bit for bit.
  std::vector<Chunk> other = chunks;
  other.push_back({5, 1});
  ASSERT_EQ(plan(P, other), 1u);
  EXPECT_EQ(r.run(), ours) << "an op of other rows ran on the plan";
  ASSERT_EQ(plan(P, chunks), 1u);
  DevBuf f32_out(P.q.size() * 4);
  auto& pl = Plugin::get();
  xq_op f32 = r.op;
  f32.dst = xquant::sdk::device_tensor(XQ_DTYPE_F32, {P.T, P.H, P.D}, f32_out.p);
  f32_out.poison();
  XQ_OK_OR_FAIL(pl.vt->run_op(pl.state, &f32));
  EXPECT_LE(rel_error_rows(P, f32_out.get<float>(P.q.size()), [](int64_t) { return true; }), kBound);
  EXPECT_NE(r.run(), ours) << "the planned op ran ours";
}

TEST(CudaFlashInferPrefill, RefusedShapesAndTheSwitchLeaveNoPlan) {
  REQUIRE_FLASHINFER();
  const std::vector<Chunk> chunks = {{0, 80}};
  {  // head_dim 64: not built; the op then runs ours
    const Problem P = build(8, 2, 64, 16, chunks);
    EXPECT_EQ(plan(P, chunks), 0u);
  }
  const Problem P = build(8, 2, 128, 16, chunks);
  PrefillRun r(P);
  ASSERT_EQ(plan(P, chunks, /*describe=*/false), 0u);
  const auto ours = r.run();
  ASSERT_EQ(plan(P, chunks), 1u);
  {
    EnvSet off("XQUANT_FLASHINFER_PREFILL", "0");
    EXPECT_EQ(plan(P, chunks), 0u) << "XQUANT_FLASHINFER_PREFILL=0 must refuse the plan";
    EXPECT_EQ(r.run(), ours) << "a plan survived XQUANT_FLASHINFER_PREFILL=0";
  }
  ASSERT_EQ(plan(P, chunks), 1u);
  EXPECT_NE(r.run(), ours);
}
