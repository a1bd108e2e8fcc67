// test_split_k_kernels.cpp: the split-K decode attention kernels, forced by
// XQUANT_DECODE_ATTENTION_KERNEL: "dim-lanes" and "dim-lanes-narrow" (the
// two sizes of plugins/cuda/src/split_k_dim_lanes.cuh: BF16 K/V with D 64 or
// 128 and GQA groups up to 8, a key's head dimension over D / 8 lanes) and
// "key-per-lane" (a key per lane, split_k_attention.cuh; everything else).
// Unset, each launch picks (split_k_launch.cuh).
// Through the provider's ABI on fresh random inputs, both against a float64
// reference: ATTENTION over a contiguous cache (decode rows and a causal
// prompt chunk) and PAGED_ATTENTION over shuffled blocks (sequences of
// different lengths in one call, spare slots NaN, so a read past a row's
// keys shows), at key counts around the tiles of both kernels and the
// few-key rule, GQA groups 1, 2, 4, 7 and 8, D 64 and 128, every ending.
// Outputs are poisoned before each run. Shapes the dim-lanes kernel does
// not take give the same bits under both settings.
//
// Bound (F32 outputs, ||gpu - ref|| / ||ref||): 1e-5 against the float64
// reference on the stored BF16 values, as the key-per-lane kernel's tests.
#include <cuda_runtime.h>

#include <cstdio>

#include "attention_ops.hpp"
#include "attention_reference.hpp"
#include "decode_attention.hpp"
#include "event_timer.hpp"
#include "paged_attention.hpp"
#include "paged_rows.hpp"
#include "split_k_plan.hpp"

using namespace xqtest;

namespace {

const char* const kKernels[] = {"dim-lanes", "dim-lanes-narrow", "key-per-lane"};
const char* const kKernelEndings[] = {"1", "2", "0"};
// Llama-3.1-8B (group 4), Qwen3-32B (8), Qwen2.5-7B (7), no GQA, group 2; D 64 and 128.
const Heads kKernelHeads[] = {{32, 8, 128}, {64, 8, 128}, {28, 4, 128}, {8, 8, 64}, {16, 8, 64}, {32, 8, 64}};
const int64_t kKernelKeyCounts[] = {1, 7, 15, 16, 17, 63, 64, 65, 128, 129, 383, 1000, 4099};

}  // namespace

TEST(CudaSplitKKernels, ContiguousRowsMatchTheReference) {
  XQ_REQUIRE_GPU();
  EnvSet split_on("XQUANT_DECODE_ATTENTION", "1");
  for (const Heads& h : kKernelHeads)
    for (int64_t n : kKernelKeyCounts)
      for (int64_t T : {int64_t{1}, int64_t{3}}) {
        if (n < T) continue;
        const AttentionShape s{T, n - T, h.H, h.KVH, h.D};
        auto q = random_values(T * h.H * h.D), k = random_values(n * h.KVH * h.D), v = random_values(n * h.KVH * h.D);
        const double scale = 1.0 / std::sqrt(static_cast<double>(h.D));
        const std::string what = describe(h, XQ_DTYPE_BF16, {n}) + " T=" + std::to_string(T);
        std::vector<double> ref;
        for (const char* kernel : kKernels)
          for (const char* ending : kKernelEndings) {
            EnvSet kv("XQUANT_DECODE_ATTENTION_KERNEL", kernel), one("XQUANT_DECODE_ATTENTION_ONE_PASS", ending);
            const auto got = run_attention(s, XQ_DTYPE_BF16, XQ_DTYPE_F32, q, k, v, scale);  // q, k, v now BF16 values
            if (ref.empty()) ref = reference_attention(s, q, k, v, scale);
            ASSERT_EQ(count_nan(got), 0u) << what << " " << kernel << " ONE_PASS=" << ending;
            EXPECT_LE(rel_error(got, ref), 1e-5) << what << " " << kernel << " ONE_PASS=" << ending;
          }
      }
}

TEST(CudaSplitKKernels, PromptChunkMatchesTheReference) {
  XQ_REQUIRE_GPU();
  EnvSet split_on("XQUANT_DECODE_ATTENTION", "1");
  for (const Heads& h : {Heads{32, 8, 128}, Heads{28, 4, 128}, Heads{16, 8, 64}}) {
    const AttentionShape s{40, 90, h.H, h.KVH, h.D};  // rows see 91 .. 130 keys
    const int64_t S = s.start + s.T;
    auto q = random_values(s.T * h.H * h.D), k = random_values(S * h.KVH * h.D), v = random_values(S * h.KVH * h.D);
    const double scale = 1.0 / std::sqrt(static_cast<double>(h.D));
    std::vector<double> ref;
    for (const char* kernel : kKernels) {
      EnvSet kv("XQUANT_DECODE_ATTENTION_KERNEL", kernel);
      const auto got = run_attention(s, XQ_DTYPE_BF16, XQ_DTYPE_F32, q, k, v, scale);
      if (ref.empty()) ref = reference_attention(s, q, k, v, scale);
      ASSERT_EQ(count_nan(got), 0u) << describe(h, XQ_DTYPE_BF16, {S}) << " " << kernel;
      EXPECT_LE(rel_error(got, ref), 1e-5) << describe(h, XQ_DTYPE_BF16, {S}) << " " << kernel;
    }
  }
}

TEST(CudaSplitKKernels, PagedRowsMatchTheReference) {
  XQ_REQUIRE_GPU();
  const std::vector<std::vector<int64_t>> batches = {
      {1, 15, 16, 17, 63, 64, 65, 129, 1000}, {4099, 1}, {300, 299, 2, 4096, 33}};
  for (const Heads& h : kKernelHeads)
    for (const auto& lens : batches)
      for (int64_t block : {int64_t{16}, int64_t{1}, int64_t{32}}) {
        PagedRows c{h, lens, block, XQ_DTYPE_BF16};
        c.setup();
        const double scale = 1.0 / std::sqrt(static_cast<double>(h.D));
        PagedRun r(c, scale);
        const auto ref = c.reference(scale);
        const std::string what = describe(h, XQ_DTYPE_BF16, lens) + " block=" + std::to_string(block);
        for (const char* kernel : kKernels)
          for (const char* ending : kKernelEndings) {
            EnvSet kv("XQUANT_DECODE_ATTENTION_KERNEL", kernel), one("XQUANT_DECODE_ATTENTION_ONE_PASS", ending);
            const auto got = r.run();
            ASSERT_EQ(count_nan(got), 0u) << what << " " << kernel << " ONE_PASS=" << ending;
            EXPECT_LE(rel_error(got, ref), 1e-5) << what << " " << kernel << " ONE_PASS=" << ending;
          }
      }
}

// F32 pools, D 256 and a group of 16 stay on the key-per-lane kernel: the
// switch changes no bit there.
TEST(CudaSplitKKernels, OtherShapesKeepTheKeyPerLaneKernel) {
  XQ_REQUIRE_GPU();
  const std::pair<Heads, xq_dtype> cases[] = {{{32, 8, 128}, XQ_DTYPE_F32},
                                              {{16, 8, 256}, XQ_DTYPE_BF16},
                                              {{64, 4, 128}, XQ_DTYPE_BF16}};
  for (const auto& [h, t] : cases) {
    PagedRows c{h, {700, 5, 129}, 16, t};
    c.setup();
    PagedRun r(c, 0.1);
    std::vector<float> got[3];
    for (int i = 0; i < 3; ++i) {
      EnvSet kv("XQUANT_DECODE_ATTENTION_KERNEL", kKernels[i]);
      got[i] = r.run();
    }
    EXPECT_EQ(got[0], got[2]) << describe(h, t, c.lens);
    EXPECT_EQ(got[1], got[2]) << describe(h, t, c.lens);
    EXPECT_LE(rel_error(got[0], c.reference(0.1)), 1e-5) << describe(h, t, c.lens);
  }
}

// Device time per call of the three kernels and of the automatic choice in one run (default ending), PAGED_ATTENTION
// at Llama-3.1-8B heads (32 over 8, D 128, BF16 pools of 16-slot blocks, shuffled),
// 1 to 128 decode rows of 128 to 4096 keys each, and one contiguous row; CUDA events
// over 100 launches after 5. Prints µs, the ratio and the K/V bytes read per second
// (run with --gtest_also_run_disabled_tests).
TEST(CudaSplitKKernels, DISABLED_SpeedDimLanesBesideKeyPerLane) {
  XQ_REQUIRE_GPU();
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t H = 32, KVH = 8, D = 128, BS = 16, Rmax = 128, Smax = 4096, MBmax = Smax / BS;
  const int64_t row = KVH * D;
  std::vector<int32_t> order(static_cast<size_t>(Rmax * MBmax));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng());
  // Pools of Rmax * MBmax blocks (2.1 GB each at BF16), filled on the device.
  const size_t pool_bytes = static_cast<size_t>(Rmax * Smax * row) * 2;
  DevBuf dq(Rmax * H * D * 4), dk(pool_bytes), dv(pool_bytes), dt(Rmax * (1 + MBmax) * 4), dout(Rmax * H * D * 4),
      ws(256 << 20);
  dq.put(random_values(Rmax * H * D));
  {
    auto chunk = random_values(1 << 20);
    const auto bytes = stored(chunk, XQ_DTYPE_BF16);
    for (size_t at = 0; at < pool_bytes; at += bytes.size()) {
      const size_t n = std::min(bytes.size(), pool_bytes - at);
      cudaMemcpy(static_cast<char*>(dk.p) + at, bytes.data(), n, cudaMemcpyHostToDevice);
      cudaMemcpy(static_cast<char*>(dv.p) + at, bytes.data(), n, cudaMemcpyHostToDevice);
    }
  }
  EventTimer timer;
  auto time_us = [&](const auto& launch) { return timer.us_per_call(launch, 5, 100); };
  XQ_OK_OR_FAIL(Plugin::get().vt->synchronize(Plugin::get().state));
  for (int64_t rows : {int64_t{0}, int64_t{1}, int64_t{8}, int64_t{32}, int64_t{128}})
    for (int64_t keys : {128, 384, 1024, 4096}) {
      const int64_t mb = (keys + BS - 1) / BS;
      std::vector<int32_t> table(static_cast<size_t>(std::max<int64_t>(rows, 1) * (1 + mb)));
      for (int64_t r = 0; r < std::max<int64_t>(rows, 1); ++r) {
        table[static_cast<size_t>(r * (1 + mb))] = static_cast<int32_t>(keys - 1);
        std::copy_n(order.begin() + r * MBmax, mb, table.begin() + r * (1 + mb) + 1);
      }
      dt.put(table);
      double us[4];
      int splits = 0;
      for (int i = 0; i < 4; ++i) {  // dim-lanes wide, narrow, key-per-lane, the automatic choice
        EnvSet kv("XQUANT_DECODE_ATTENTION_KERNEL", i < 3 ? kKernels[i] : "auto");
        if (rows == 0) {  // one row over a contiguous cache (ATTENTION's split path; q BF16)
          xqcuda::DecodeAttentionArgs c;
          c.q = dk.p, c.k = dk.p, c.v = dv.p, c.out = dout.p, c.kv_type = xqcuda::DType::BF16;
          c.T = 1, c.H = H, c.KVH = KVH, c.D = D, c.start = keys - 1, c.scale = 0.088f;
          splits = xqcuda::decode_attention_splits(c, sms);
          us[i] = time_us([&] { xqcuda::decode_attention(c, splits, ws.p, nullptr); });
        } else {
          xqcuda::PagedAttentionArgs p;
          p.q = static_cast<const float*>(dq.p), p.kpool = dk.p, p.vpool = dv.p, p.pool_type = xqcuda::DType::BF16;
          p.table = static_cast<const int32_t*>(dt.p), p.table_ld = 1 + mb;
          p.T = rows, p.n_seq = 0, p.H = H, p.KVH = KVH, p.D = D, p.BS = BS, p.max_keys = mb * BS, p.scale = 0.088f;
          p.out = dout.p;
          splits = xqcuda::paged_attention_splits(rows, KVH, p.max_keys, sms);
          us[i] = time_us([&] { xqcuda::paged_attention(p, splits, ws.p, nullptr); });
        }
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      }
      const double gb = static_cast<double>(std::max<int64_t>(rows, 1) * keys * row * 2 * 2) / 1e9;
      std::printf("decode attention kernels, %s %3lld rows, %4lld keys, %2d splits: dim-lanes %7.2f us (%4.0f GB/s), "
                  "narrow %7.2f us (%4.0f GB/s), key-per-lane %7.2f us (%4.0f GB/s); key-per-lane / dim-lanes %.2fx, "
                  "/ narrow %.2fx, / auto %.2fx\n",
                  rows == 0 ? "contiguous" : "paged     ", static_cast<long long>(std::max<int64_t>(rows, 1)),
                  static_cast<long long>(keys), splits, us[0], gb / us[0] * 1e6, us[1], gb / us[1] * 1e6, us[2],
                  gb / us[2] * 1e6, us[2] / us[0], us[2] / us[1], us[2] / us[3]);
    }
}
