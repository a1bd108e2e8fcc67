// test_flashinfer_decode.cpp: PAGED_ATTENTION on FlashInfer's decode kernel
// (plugins/cuda/src/flashinfer_decode.hpp), reached as the engine reaches it:
// xq_kernel_vtable.plan_paged_step with the rows' lengths, then run_op. On
// fresh random inputs (paged_rows.hpp: shuffled blocks, NaN in every unused
// slot): decode rows of 1 to 5000 keys match a float64 softmax attention over
// each sequence's keys in order, GQA groups 1, 2, 4, 8, F32 and BF16 output,
// and differ in bits from our kernels' output (so FlashInfer's ran);
// a recording made under one plan, launched after the plan of other lengths,
// answers the new lengths, and is refused by name without a plan of its
// shape; the op falls back to our kernels (still matching the reference)
// when the plan is dropped or does not describe it; and by default the
// provider plans only steps of 8 rows and more.
// The SDK adapter's argument checks are tested on the CPU (tests/sdk).
// Bounds (||gpu - ref|| / ||ref||, reference on the BF16-rounded K/V): F32
// output 2e-5 (FlashInfer keeps q and its arithmetic in F32; its split-KV
// merge and exp2 differ from ours in rounding only), BF16 output 8e-3 (the
// output's rounding, and with split-KV the partial outputs', each <= 2^-9
// relative).
#include "test_host.hpp"
#include "paged_rows.hpp"
#include "flashinfer_plan.hpp"

#include <xquant/sdk/half.hpp>

#include <cmath>

using namespace xqtest;

namespace {

// plan_paged_step for a PagedRows case (rows = 0: drop the plan).
uint32_t plan(const PagedRows& c, bool rows = true) {
  auto& P = Plugin::get();
  std::vector<int32_t> lens(c.lens.begin(), c.lens.end());
  xq_paged_plan p{};
  p.struct_size = sizeof(p);
  p.rows = rows ? static_cast<int64_t>(lens.size()) : 0;
  p.kv_lens = rows ? lens.data() : nullptr;
  p.table_ld = c.width;
  p.block_size = c.BS;
  p.heads = c.h.H;
  p.kv_heads = c.h.KVH;
  p.head_dim = c.h.D;
  p.kv_dtype = c.pool_t;
  EXPECT_EQ(P.vt->plan_paged_step(P.state, &p), XQ_OK) << g_last_error;
  return p.taken;
}

// The op's output read back as floats (BF16 or F32 dst).
std::vector<float> run_as(PagedRun& r, xq_dtype out_t, size_t n) {
  auto& P = Plugin::get();
  r.op.dst.dtype = out_t;
  r.dout.poison();
  EXPECT_EQ(P.vt->run_op(P.state, &r.op), XQ_OK) << g_last_error;
  if (out_t == XQ_DTYPE_F32) return r.dout.get<float>(n);
  const auto bits = r.dout.get<uint16_t>(n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = xquant::sdk::bf16_to_f32(bits[i]);
  return f;
}

double bound(xq_dtype out_t) { return out_t == XQ_DTYPE_F32 ? 2e-5 : 8e-3; }

// Another case's inputs into a run's buffers (the same blocks and table
// width: the op, or a recording of it, reads them at the same addresses).
void put_case(PagedRun& r, const PagedRows& c) {
  ASSERT_EQ(c.q.size() * 4, r.dq.n);
  ASSERT_EQ(c.kpool.size(), r.dk.n);
  ASSERT_EQ(c.table.size() * 4, r.dt.n);
  r.dq.put(c.q);
  r.dk.put(c.kpool);
  r.dv.put(c.vpool);
  r.dt.put(c.table);
}

}  // namespace

TEST(CudaFlashInferDecode, MatchesTheReferenceAcrossGroupsLengthsAndOutputs) {
  REQUIRE_FLASHINFER();
  const double scale = 1.0 / std::sqrt(128.0);
  const std::vector<std::pair<Heads, std::vector<int64_t>>> cases = {
      {{32, 8, 128}, {1}},                                      // one row, one key (split-KV, one chunk)
      {{32, 8, 128}, {1000, 384, 5000, 40, 17, 1, 129, 256}},  // mixed lengths, split-KV
      {{8, 8, 128}, {300, 2, 4097}},                            // group 1
      {{16, 8, 128}, {77, 1600}},                               // group 2
      {{64, 8, 128}, {513, 31, 2048}},                          // group 8 (Qwen3-32B's heads)
  };
  for (const auto& [heads, lens] : cases) {
    PagedRows c{heads, lens, 16, XQ_DTYPE_BF16};
    c.setup();
    PagedRun r(c, scale);
    const auto ref = c.reference(scale);
    ASSERT_EQ(plan(c), 1u) << describe(heads, c.pool_t, lens);
    std::vector<float> planned_f32;
    for (xq_dtype out_t : {XQ_DTYPE_F32, XQ_DTYPE_BF16}) {
      const auto got = run_as(r, out_t, c.q.size());
      ASSERT_EQ(count_nan(got), 0u) << describe(heads, c.pool_t, lens);
      EXPECT_LE(rel_error(got, ref), bound(out_t)) << describe(heads, c.pool_t, lens)
                                                    << (out_t == XQ_DTYPE_F32 ? " out F32" : " out BF16");
      if (out_t == XQ_DTYPE_F32) planned_f32 = got;
    }
    // FlashInfer's kernel ran, not ours: over many keys their F32 roundings
    // differ (one row of one key is that key's V row in both).
    if (lens.size() > 1) {
      ASSERT_EQ(plan(c, /*rows=*/false), 0u);
      EXPECT_NE(run_as(r, XQ_DTYPE_F32, c.q.size()), planned_f32)
          << describe(heads, c.pool_t, lens) << ": the planned op gave our kernels' bits";
    }
  }
  // Many rows: 64 (still split-KV on an H100, 132 SMs) and 256 (rows x KV
  // heads fill the GPU: its plan launches without split-KV, the output written
  // by the decode kernel itself, no merge), both outputs.
  for (int64_t rows : {64, 256}) {
    std::vector<int64_t> lens(static_cast<size_t>(rows));
    for (auto& n : lens) n = uniform_int(1, rows == 64 ? 3000 : 400);
    PagedRows c{{32, 8, 128}, lens, 16, XQ_DTYPE_BF16};
    c.setup();
    PagedRun r(c, scale);
    const auto ref = c.reference(scale);
    ASSERT_EQ(plan(c), 1u) << rows << " rows";
    for (xq_dtype out_t : {XQ_DTYPE_F32, XQ_DTYPE_BF16})
      EXPECT_LE(rel_error(run_as(r, out_t, c.q.size()), ref), bound(out_t)) << rows << " rows";
  }
}

// The engine records a decode step once per bucket and launches it for later
// steps after planning each: the recording must read the newest plan.
TEST(CudaFlashInferDecode, ARecordingAnswersThePlanOfTheStepItIsLaunchedIn) {
  REQUIRE_FLASHINFER();
  auto& P = Plugin::get();
  const double scale = 1.0 / std::sqrt(128.0);
  // The same rows, tables and pools in size (a permutation of the lengths:
  // same block count, same table width), different lengths per row.
  const std::vector<std::vector<int64_t>> steps = {{1000, 37, 5000, 5}, {5, 5000, 37, 1000}, {37, 5, 1000, 5000}};
  PagedRows first{{32, 8, 128}, steps[0], 16, XQ_DTYPE_BF16};
  first.setup();
  PagedRun r(first, scale);
  ASSERT_EQ(plan(first), 1u);
  xq_graph* g = record_op(r.op);
  ASSERT_NE(g, nullptr);
  for (const auto& lens : steps) {
    PagedRows c{{32, 8, 128}, lens, 16, XQ_DTYPE_BF16};
    c.setup();
    ASSERT_EQ(c.width, first.width);
    ASSERT_EQ(c.NB, first.NB);
    put_case(r, c);
    ASSERT_EQ(plan(c), 1u);
    r.dout.poison();
    XQ_OK_OR_FAIL(P.vt->graph_launch(P.state, g));
    const auto got = r.dout.get<float>(c.q.size());
    ASSERT_EQ(count_nan(got), 0u) << describe(c.h, c.pool_t, lens);
    EXPECT_LE(rel_error(got, c.reference(scale)), bound(XQ_DTYPE_F32)) << describe(c.h, c.pool_t, lens);
  }
  // Launched with no plan, or a plan of other rows, it is refused by name
  // (its kernels would read a stale plan).
  EXPECT_EQ(plan(first, /*rows=*/false), 0u);
  EXPECT_EQ(P.vt->graph_launch(P.state, g), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g_last_error.find("plan_paged_step"), std::string::npos) << g_last_error;
  PagedRows fewer{{32, 8, 128}, {1000, 37, 5000}, 16, XQ_DTYPE_BF16};
  fewer.setup();
  ASSERT_EQ(plan(fewer), 1u);
  EXPECT_EQ(P.vt->graph_launch(P.state, g), XQ_ERR_INVALID_ARGUMENT);
  P.vt->graph_release(P.state, g);
  // No planning while recording (its copy would be recorded, not run).
  XQ_OK_OR_FAIL(P.vt->graph_begin(P.state));
  std::vector<int32_t> lens(first.lens.begin(), first.lens.end());
  xq_paged_plan p{};
  p.struct_size = sizeof(p);
  p.rows = static_cast<int64_t>(lens.size());
  p.kv_lens = lens.data();
  EXPECT_EQ(P.vt->plan_paged_step(P.state, &p), XQ_ERR_INVALID_ARGUMENT);
  XQ_OK_OR_FAIL(P.vt->graph_end(P.state, &g));
  P.vt->graph_release(P.state, g);
}

// Ops the plan does not describe run our kernels: after the plan is
// dropped, for other rows than planned, and for head_dim 64 (never planned).
TEST(CudaFlashInferDecode, OpsThePlanDoesNotDescribeRunOurKernels) {
  REQUIRE_FLASHINFER();
  const double scale = 1.0 / std::sqrt(128.0);
  PagedRows c{{32, 8, 128}, {700, 3, 2100}, 16, XQ_DTYPE_BF16};
  c.setup();
  PagedRun r(c, scale);
  const auto ref = c.reference(scale);
  ASSERT_EQ(plan(c), 1u);
  EXPECT_EQ(plan(c, /*rows=*/false), 0u);  // dropped
  // Other lengths in the same buffers (same blocks and table width): run on
  // the dropped plan, the rows would keep the old lengths and miss the reference.
  PagedRows moved{{32, 8, 128}, {2100, 700, 3}, 16, XQ_DTYPE_BF16};
  moved.setup();
  ASSERT_EQ(moved.width, c.width);
  ASSERT_EQ(moved.NB, c.NB);
  put_case(r, moved);
  EXPECT_LE(rel_error(run_as(r, XQ_DTYPE_F32, moved.q.size()), moved.reference(scale)), 1e-5);
  put_case(r, c);
  PagedRows other{{32, 8, 128}, {700, 3}, 16, XQ_DTYPE_BF16};
  other.setup();
  ASSERT_EQ(plan(other), 1u);  // two rows planned, three in the op
  EXPECT_LE(rel_error(run_as(r, XQ_DTYPE_F32, c.q.size()), ref), 1e-5);
  PagedRows d64{{8, 2, 64}, {90, 1000}, 16, XQ_DTYPE_BF16};
  d64.setup();
  EXPECT_EQ(plan(d64), 0u);
  PagedRun r64(d64, 1.0 / 8.0);
  EXPECT_LE(rel_error(run_as(r64, XQ_DTYPE_F32, d64.q.size()), d64.reference(1.0 / 8.0)), 1e-5);
  // The provider's default rule: fewer than 8 rows run ours (slower there in
  // the engine, flashinfer_decode.hpp), 8 and more FlashInfer's.
  {
    EnvSet default_rule("XQUANT_FLASHINFER_DECODE_MIN_ROWS", nullptr);
    EXPECT_EQ(plan(c), 0u);
    PagedRows eight{{32, 8, 128}, {700, 3, 2100, 1, 64, 65, 4000, 16}, 16, XQ_DTYPE_BF16};
    eight.setup();
    EXPECT_EQ(plan(eight), 1u);
  }
  // Bad arguments are refused with a message.
  auto& P = Plugin::get();
  xq_paged_plan bad{};
  bad.struct_size = sizeof(bad);
  bad.rows = 3;  // no kv_lens
  EXPECT_EQ(P.vt->plan_paged_step(P.state, &bad), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g_last_error.find("plan_paged_step"), std::string::npos) << g_last_error;
}
