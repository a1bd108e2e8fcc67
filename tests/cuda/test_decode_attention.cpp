// test_decode_attention.cpp: ATTENTION over a contiguous KV cache through the
// split-K kernel (plugins/cuda/src/decode_attention.cu), run through the
// provider's ABI on fresh random inputs against a float64 reference:
// decode rows (T = 1..3) at starts that give one split up to 64, prompt
// chunks (one split per CTA), GQA groups 1..16, head dims 64/128/256, F32 and
// BF16 q/k/v, F32 and BF16 outputs, and a K pointer off 16-byte alignment
// (the one-block-per-head kernel answers). Outputs are poisoned before each
// run, so an unwritten element shows as NaN.
//
// Bounds (||gpu - ref|| / ||ref||): 1e-5 with an F32 output (F32 arithmetic,
// inputs exact: BF16 ones are compared on their rounded values); 5e-3 with a
// BF16 output (its rounding, 2^-9 relative).
#include "test_host.hpp"

#include <xquant/sdk/half.hpp>

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>

#include "attention_ops.hpp"
#include "attention_reference.hpp"
#include "decode_attention.hpp"
#include "event_timer.hpp"
#include "decoder_ops.hpp"

using namespace xqtest;

namespace {

using Shape = AttentionShape;

}  // namespace

TEST(CudaDecodeAttention, MatchesFloat64ReferenceForDecodeRowsAndChunks) {
  XQ_REQUIRE_GPU();
  const Shape shapes[] = {
      {1, 0, 32, 8, 128},   {1, 31, 32, 8, 128},  {1, 383, 32, 8, 128}, {1, 4000, 8, 8, 64},
      {2, 700, 28, 4, 128}, {3, 100, 16, 1, 64},  {1, 250, 12, 2, 256}, {1, 5000, 32, 2, 128},
      {40, 0, 8, 2, 64},    {130, 70, 32, 8, 128}, {1, 1, 7, 7, 64},    {5, 64, 14, 2, 128}};
  for (const Shape& s : shapes)
    for (xq_dtype in_t : {XQ_DTYPE_F32, XQ_DTYPE_BF16})
      for (xq_dtype out_t : {XQ_DTYPE_F32, XQ_DTYPE_BF16}) {
        const int64_t S = s.start + s.T;
        auto q = random_values(s.T * s.H * s.D), k = random_values(S * s.KVH * s.D), v = random_values(S * s.KVH * s.D);
        const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
        const auto got = run_attention(s, in_t, out_t, q, k, v, scale);
        const auto ref = reference_attention(s, q, k, v, scale);
        const double err = rel_error(got, ref);
        EXPECT_EQ(count_nan(got), 0u) << "T=" << s.T << " start=" << s.start;
        EXPECT_LE(err, out_t == XQ_DTYPE_F32 ? 1e-5 : 5e-3)
            << "T=" << s.T << " start=" << s.start << " H=" << s.H << " KVH=" << s.KVH << " D=" << s.D
            << " in " << (in_t == XQ_DTYPE_F32 ? "F32" : "BF16") << " out " << (out_t == XQ_DTYPE_F32 ? "F32" : "BF16");
      }
}

TEST(CudaDecodeAttention, SplitsCoverTheChipAndEveryKey) {
  // A batch-1 decode at Llama-3.1-8B heads (8 kv heads) on 132 SMs: 33 CTAs
  // per kv head wanted, one 32-key tile each; never more splits than tiles,
  // never more than 64; a long prompt chunk already fills the chip: one split.
  xqcuda::DecodeAttentionArgs a;
  a.T = 1, a.H = 32, a.KVH = 8, a.D = 128;
  for (int64_t start : {0, 31, 32, 383, 1055, 4095, 100000}) {
    a.start = start;
    const int splits = xqcuda::decode_attention_splits(a, 132);
    const int64_t tiles = (start + 1 + 31) / 32;
    EXPECT_GE(splits, 1);
    EXPECT_LE(splits, std::min<int64_t>({tiles, 33, 64})) << start;
    EXPECT_GE(splits * 1.0, std::min<int64_t>(tiles, 33) * 0.5) << start;  // at least half the wanted spread
  }
  a.T = 128, a.start = 0;
  EXPECT_EQ(xqcuda::decode_attention_splits(a, 132), 1);
}

TEST(CudaDecodeAttention, UnalignedCacheFallsBackToTheOneBlockKernel) {
  XQ_REQUIRE_GPU();
  const Shape s{1, 90, 8, 2, 64};
  const int64_t S = s.start + s.T;
  auto q = random_values(s.T * s.H * s.D), k = random_values(S * s.KVH * s.D), v = random_values(S * s.KVH * s.D);
  xqcuda::DecodeAttentionArgs a;
  a.kv_type = xqcuda::DType::F32;
  a.T = s.T, a.H = s.H, a.KVH = s.KVH, a.D = s.D;
  a.k = reinterpret_cast<const void*>(uintptr_t{4});
  a.v = reinterpret_cast<const void*>(uintptr_t{16});
  EXPECT_FALSE(xqcuda::decode_attention_fits(a));
  const auto got = run_attention(s, XQ_DTYPE_F32, XQ_DTYPE_F32, q, k, v, 0.125, /*k_offset=*/4);
  EXPECT_LE(rel_error(got, reference_attention(s, q, k, v, 0.125)), 1e-5);
}

// Device time of one decode row's ATTENTION at Llama-3.1-8B heads (32 over
// 8, D 128, F32 cache) after 128..2048 keys: the split kernel beside the
// one-block-per-head kernel, CUDA events over 200 launches each. Prints;
// asserts nothing about speed (run with --gtest_also_run_disabled_tests).
TEST(CudaDecodeAttention, DISABLED_SpeedOneRow) {
  XQ_REQUIRE_GPU();
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  const int64_t H = 32, KVH = 8, D = 128, Smax = 2048;
  DevBuf dq(H * D * 4), dk(Smax * KVH * D * 4), dv(Smax * KVH * D * 4), dout(H * D * 4), ws(64 << 20);
  dq.put(random_values(H * D));
  dk.put(random_values(Smax * KVH * D));
  dv.put(random_values(Smax * KVH * D));
  EventTimer timer;
  auto time_us = [&](const auto& launch) { return timer.us_per_call(launch, 10, 200); };
  for (int64_t keys : {128, 384, 1024, 2048}) {
    xqcuda::DecodeAttentionArgs a;
    a.q = dq.p, a.k = dk.p, a.v = dv.p, a.out = dout.p;
    a.T = 1, a.H = H, a.KVH = KVH, a.D = D, a.start = keys - 1, a.scale = 0.088f;
    const int splits = xqcuda::decode_attention_splits(a, sms);
    const double split_us = time_us([&] { xqcuda::decode_attention(a, splits, ws.p, nullptr); });
    const double block_us = time_us([&] {
      xqcuda::attention(dq.p, dk.p, dv.p, xqcuda::DType::F32, 1, H, KVH, D, keys, keys - 1, 0.088f, dout.p,
                        xqcuda::DType::F32, nullptr);
    });
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    std::printf("decode ATTENTION, %lld keys: split-K %.2f us (%d splits), one block per head %.2f us (%.1fx)\n",
                static_cast<long long>(keys), split_us, splits, block_us, block_us / split_us);
  }
}
