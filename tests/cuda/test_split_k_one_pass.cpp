// test_split_k_one_pass.cpp: the endings of the split-K attention kernel
// (plugins/cuda/src/split_k_attention.cuh), picked by
// XQUANT_DECODE_ATTENTION_ONE_PASS: "1", the last CTA of each (row, kv head)
// merges the splits' partials in the same launch and resets its arrival
// counter (the default, also when unset; few keys keep one split); "2", few
// keys keep one split and split launches get a merge kernel; "0", the
// previous rule. Through the provider's ABI, on
// fresh random inputs, ATTENTION (contiguous cache) and PAGED_ATTENTION
// (shuffled blocks, several sequences of different lengths in one call) in
// all three against a float64 reference; a recorded graph replayed three
// times (the counters must be back at zero for a replay to write anything).
// Outputs are poisoned (NaN) before every run, so a merge that never
// happened shows.
//
// Bounds (F32 outputs, ||gpu - ref|| / ||ref||): 1e-5 against the float64
// reference on the stored (rounded) values; last-CTA merge against the merge
// kernel on the same splits: 2e-6 (same partials, the merge's sums grouped the same,
// exp2f of the same arguments; kept a bound, not bit equality, since the
// two merges are compiled separately and may contract differently).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>
#include <utility>

#include "attention_ops.hpp"
#include "attention_reference.hpp"
#include "decode_attention.hpp"
#include "event_timer.hpp"
#include "paged_attention.hpp"
#include "paged_rows.hpp"
#include "split_k_plan.hpp"

using namespace xqtest;

namespace {

const int64_t kKeyCounts[] = {1, 31, 32, 33, 127, 128, 129, 255, 256, 257, 1000, 5000};
// XQUANT_DECODE_ATTENTION_ONE_PASS values: the last CTA merges (the default),
// the merge kernel, the previous rule.
const char* const kEndings[] = {"1", "2", "0"};
const Heads kHeads[] = {{8, 8, 64}, {32, 8, 128}, {64, 8, 128}, {32, 8, 64}, {8, 8, 128}, {64, 8, 64}};

}  // namespace

// One decode row over a contiguous cache: one-pass and two-kernel against
// the reference and each other, at key counts around tile and few-key
// boundaries, GQA 1/4/8, D 64/128, F32 and BF16 K/V.
TEST(CudaSplitKOnePass, ContiguousRowMatchesReferenceAndTwoKernels) {
  XQ_REQUIRE_GPU();
  EnvSet split_on("XQUANT_DECODE_ATTENTION", "1");
  for (xq_dtype kv_t : {XQ_DTYPE_F32, XQ_DTYPE_BF16})
    for (const Heads& h : kHeads)
      for (int64_t n : kKeyCounts) {
        const AttentionShape s{1, n - 1, h.H, h.KVH, h.D};
        const std::string what = describe(h, kv_t, {n});
        auto q = random_values(h.H * h.D), k = random_values(n * h.KVH * h.D), v = random_values(n * h.KVH * h.D);
        const double scale = 1.0 / std::sqrt(static_cast<double>(h.D));
        std::vector<float> got[3];
        for (int m = 0; m < 3; ++m) {
          EnvSet ending("XQUANT_DECODE_ATTENTION_ONE_PASS", kEndings[m]);
          got[m] = run_attention(s, kv_t, XQ_DTYPE_F32, q, k, v, scale);
        }
        const auto ref = reference_attention(s, q, k, v, scale);
        for (int m = 0; m < 3; ++m) {
          ASSERT_EQ(count_nan(got[m]), 0u) << what << " ONE_PASS='" << kEndings[m] << "'";
          EXPECT_LE(rel_error(got[m], ref), 1e-5) << what << " ONE_PASS='" << kEndings[m] << "'";
        }
        if (n > xqcuda::kSplitKFewKeys) {  // the same splits, merged in the launch or by the kernel
          EXPECT_LE(rel_error(got[0], std::vector<double>(got[2].begin(), got[2].end())), 2e-6) << what;
        }
      }
}

// Several sequences of different lengths in one PAGED_ATTENTION call (one
// decode row each), blocks shuffled: every row against its own reference,
// both paths.
TEST(CudaSplitKOnePass, PagedRowsOfDifferentLengthsInOneCall) {
  XQ_REQUIRE_GPU();
  const std::vector<std::vector<int64_t>> batches = {
      {1, 31, 32, 33, 255, 256, 257, 1000, 5000}, {5000, 1}, {17}, {300, 299, 298, 2, 64, 4096, 1024, 33}};
  for (xq_dtype kv_t : {XQ_DTYPE_F32, XQ_DTYPE_BF16})
    for (const Heads& h : kHeads)
      for (const auto& lens : batches) {
        PagedRows c{h, lens, 16, kv_t};
        c.setup();
        const std::string what = describe(h, kv_t, lens);
        const double scale = 1.0 / std::sqrt(static_cast<double>(h.D));
        PagedRun r(c, scale);
        const auto ref = c.reference(scale);
        for (const char* ending : kEndings) {
          EnvSet sw("XQUANT_DECODE_ATTENTION_ONE_PASS", ending);
          const auto got = r.run();
          ASSERT_EQ(count_nan(got), 0u) << what << " ONE_PASS='" << ending << "'";
          EXPECT_LE(rel_error(got, ref), 1e-5) << what << " ONE_PASS='" << ending << "'";
        }
      }
}

// A recorded PAGED_ATTENTION replayed twice with new q in between: each
// replay writes the poisoned output in full and matches its own reference,
// so the first replay's last CTAs put the counters back to zero.
TEST(CudaSplitKOnePass, GraphReplaysResetTheCounters) {
  XQ_REQUIRE_GPU();
  EnvSet on("XQUANT_DECODE_ATTENTION_ONE_PASS", "1");
  auto& P = Plugin::get();
  PagedRows c{{32, 8, 128}, {1000, 384, 5000, 40}, 16, XQ_DTYPE_BF16};
  c.setup();
  const double scale = 1.0 / std::sqrt(128.0);
  PagedRun r(c, scale);
  ASSERT_GT(xqcuda::paged_attention_splits(4, 8, 5008, 132), 1);  // the merge runs
  xq_graph* g = record_op(r.op);
  ASSERT_NE(g, nullptr);
  for (int replay = 0; replay < 3; ++replay) {
    c.q = random_values(static_cast<int64_t>(c.q.size()));
    r.dq.put(c.q);
    r.dout.poison();
    XQ_OK_OR_FAIL(P.vt->graph_launch(P.state, g));
    XQ_OK_OR_FAIL(P.vt->synchronize(P.state));
    const auto got = r.dout.get<float>(c.q.size());  // (synchronised above)
    ASSERT_EQ(count_nan(got), 0u) << "replay " << replay;
    EXPECT_LE(rel_error(got, c.reference(scale)), 1e-5) << "replay " << replay;
  }
  P.vt->graph_release(P.state, g);
  // Eager after the replays: counters still clean.
  const auto eager = r.run();
  EXPECT_LE(rel_error(eager, c.reference(scale)), 1e-5);
}

TEST(CudaSplitKOnePass, FewKeysKeepOneSplit) {
  // No GPU needed: by default rows of at most kSplitKFewKeys keys take one
  // split (no merge at all); the previous rule spreads them.
  for (int64_t keys : {1, 32, 33, 127, 128}) {
    EXPECT_EQ(xqcuda::split_k_splits(8, keys, 132, true), 1) << keys;
    if (keys > 32) {
      EXPECT_GT(xqcuda::split_k_splits(8, keys, 132, false), 1) << keys;
    }
  }
  EXPECT_GT(xqcuda::split_k_splits(8, 129, 132, true), 1);
  EXPECT_EQ(xqcuda::split_k_splits(8, 1024, 132, true), xqcuda::split_k_splits(8, 1024, 132, false));
}

// Device time per call of the three endings (last-CTA merge = the default, merge kernel,
// the previous rule; each with its own split rule), in one run: one decode row over a contiguous cache and over pages,
// and 8 sequences of the same length over pages, at Llama-3.1-8B heads
// (32 over 8, D 128, BF16 K/V), CUDA events over 200 launches. Prints only
// (run with --gtest_also_run_disabled_tests).
TEST(CudaSplitKOnePass, DISABLED_SpeedOnePassBesideTwoKernels) {
  XQ_REQUIRE_GPU();
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t H = 32, KVH = 8, D = 128, BS = 16, Smax = 4096, R = 8, MB = Smax / BS;
  // 8 sequences' blocks, shuffled, in one pool of R * MB blocks.
  std::vector<int32_t> order(static_cast<size_t>(R * MB));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng());
  DevBuf dq(R * H * D * 4), dk(R * Smax * KVH * D * 2), dv(R * Smax * KVH * D * 2), dt(R * (1 + MB) * 4),
      dout(R * H * D * 4), ws(64 << 20);
  dq.put(random_values(R * H * D));
  {
    auto kv = random_values(R * Smax * KVH * D);
    dk.put(stored(kv, XQ_DTYPE_BF16));
    dv.put(stored(kv, XQ_DTYPE_BF16));
  }
  EventTimer timer;
  auto time_us = [&](const auto& launch) { return timer.us_per_call(launch, 10, 200); };
  XQ_OK_OR_FAIL(Plugin::get().vt->synchronize(Plugin::get().state));
  for (int64_t keys : {128, 384, 1024, 4096}) {
    const int64_t mb = (keys + BS - 1) / BS;
    std::vector<int32_t> table(static_cast<size_t>(R * (1 + mb)));
    for (int64_t r = 0; r < R; ++r) {
      table[static_cast<size_t>(r * (1 + mb))] = static_cast<int32_t>(keys - 1);
      std::copy_n(order.begin() + r * MB, mb, table.begin() + r * (1 + mb) + 1);
    }
    dt.put(table);
    double us[3][3];
    int splits[3][3];
    for (int mode = 0; mode < 3; ++mode) {  // kEndings: last-CTA merge, merge kernel, previous
      EnvSet sw("XQUANT_DECODE_ATTENTION_ONE_PASS", kEndings[mode]);
      xqcuda::DecodeAttentionArgs c;
      c.q = dq.p, c.k = dk.p, c.v = dv.p, c.out = dout.p, c.kv_type = xqcuda::DType::BF16;
      c.T = 1, c.H = H, c.KVH = KVH, c.D = D, c.start = keys - 1, c.scale = 0.088f;
      splits[0][mode] = xqcuda::decode_attention_splits(c, sms);
      us[0][mode] = time_us([&] { xqcuda::decode_attention(c, splits[0][mode], ws.p, nullptr); });
      for (int64_t rows : {int64_t{1}, R}) {
        xqcuda::PagedAttentionArgs p;
        p.q = static_cast<const float*>(dq.p), p.kpool = dk.p, p.vpool = dv.p, p.pool_type = xqcuda::DType::BF16;
        p.table = static_cast<const int32_t*>(dt.p), p.table_ld = 1 + mb;
        p.T = rows, p.n_seq = 0, p.H = H, p.KVH = KVH, p.D = D, p.BS = BS, p.max_keys = mb * BS, p.scale = 0.088f;
        p.out = dout.p;
        const int i = rows == 1 ? 1 : 2;
        splits[i][mode] = xqcuda::paged_attention_splits(rows, KVH, p.max_keys, sms);
        us[i][mode] = time_us([&] { xqcuda::paged_attention(p, splits[i][mode], ws.p, nullptr); });
      }
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    }
    // The merge-kernel ending with 8 waves of CTAs instead of 2 (XQUANT_SPLIT_K_WAVES): more splits.
    double waves8_us[3];
    int waves8_splits[3];
    {
      EnvSet w8("XQUANT_SPLIT_K_WAVES", "8");
      EnvSet merge_kernel("XQUANT_DECODE_ATTENTION_ONE_PASS", kEndings[1]);
      xqcuda::DecodeAttentionArgs c;
      c.q = dq.p, c.k = dk.p, c.v = dv.p, c.out = dout.p, c.kv_type = xqcuda::DType::BF16;
      c.T = 1, c.H = H, c.KVH = KVH, c.D = D, c.start = keys - 1, c.scale = 0.088f;
      waves8_splits[0] = xqcuda::decode_attention_splits(c, sms);
      waves8_us[0] = time_us([&] { xqcuda::decode_attention(c, waves8_splits[0], ws.p, nullptr); });
      for (int64_t rows : {int64_t{1}, R}) {
        xqcuda::PagedAttentionArgs p;
        p.q = static_cast<const float*>(dq.p), p.kpool = dk.p, p.vpool = dv.p, p.pool_type = xqcuda::DType::BF16;
        p.table = static_cast<const int32_t*>(dt.p), p.table_ld = 1 + mb;
        p.T = rows, p.n_seq = 0, p.H = H, p.KVH = KVH, p.D = D, p.BS = BS, p.max_keys = mb * BS, p.scale = 0.088f;
        p.out = dout.p;
        const int i = rows == 1 ? 1 : 2;
        waves8_splits[i] = xqcuda::paged_attention_splits(rows, KVH, p.max_keys, sms);
        waves8_us[i] = time_us([&] { xqcuda::paged_attention(p, waves8_splits[i], ws.p, nullptr); });
      }
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    }
    const char* names[3] = {"contiguous 1 row", "paged 1 row     ", "paged 8 rows    "};
    for (int i = 0; i < 3; ++i)
      std::printf("decode ATTENTION endings, %s, %4lld keys: last-CTA merge %.2f us (%d splits), merge kernel %.2f us "
                  "(%d splits), previous %.2f us (%d splits); previous/merge kernel %.2fx, previous/last-CTA %.2fx\n",
                  names[i], static_cast<long long>(keys), us[i][0], splits[i][0], us[i][1], splits[i][1], us[i][2],
                  splits[i][2], us[i][2] / us[i][1], us[i][2] / us[i][0]);
    for (int i = 0; i < 3; ++i)
      std::printf("decode ATTENTION waves, %s, %4lld keys: merge kernel 2 waves %.2f us (%d splits), 8 waves %.2f us "
                  "(%d splits), 2/8 %.2fx\n",
                  names[i], static_cast<long long>(keys), us[i][1], splits[i][1], waves8_us[i], waves8_splits[i],
                  us[i][1] / waves8_us[i]);
  }
}
