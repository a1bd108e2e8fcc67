// bf16_gemv.hpp: MATMUL with BF16 weights and activations for a few rows
// (decode at batch 1..4): y[m, n] = x[m, :] . w[n, :] (+ bias[n]).
//
// At M = 1 the step is a stream over the weight; cuBLASLt's kernels reached
// only ~2.1 TB/s of an H200's ~4.3 on the thinner Llama shapes (o_proj
// 4096 x 4096). Here a few warps own each output row and read it with
// 16-byte loads, several in flight per lane, x from L1/L2, the dot products
// reduced with warp shuffles (the layout of llama.cpp's and vLLM's
// skinny-GEMM kernels for small batches), then across the row's warps in
// shared memory.
#pragma once

#include <cstdint>

#include "kernels.hpp"

namespace xqcuda {

constexpr int64_t kGemvMaxRows = 4;

// With one warp a row, rows longer than this stay with cuBLASLt: on an
// H200 (2026-12-01, M = 1) that form read 4096-wide rows at 1.09x (q|k|v
// 6144 x 4096), 1.22x (o_proj 4096 x 4096), 0.99x (gate|up 28672 x 4096)
// and 1.03x (lm_head 128256 x 4096) cuBLASLt's rate, but 14336-wide rows
// (down_proj) at 0.94x: a warp per row leaves half the warp slots empty at
// N = 4096 and walks 56 chunks per lane, where cuBLASLt splits K.
constexpr int64_t kGemvMaxK = 8192;
// With the row split over warps (bf16_gemv_split > 1) the 14336-wide rows
// are the kernel's too.
constexpr int64_t kGemvMaxSplitK = 16384;
// The warps that read one row (1, 2 or 4): XQUANT_BF16_GEMV_SPLIT (read
// per call, an A/B switch), kDefaultSplit where it is unset, 0 where it is
// set to anything else (the provider refuses the op, naming the variable).
// The provider reads it once per op and passes it to both calls below. On
// an H200 (2026-12-04, tests/cuda/test_bf16_gemv.cpp's
// DISABLED_SpeedAtBatch1, M = 1) four warps a row read every Llama-3.1-8B
// shape faster than one: q|k|v 6144 x 4096 13.1 vs 13.4 us, o_proj 4096 x
// 4096 7.8 vs 10.0, gate|up 28672 x 4096 53.9 vs 57.3, down 4096 x 14336
// 30.9 (cuBLASLt 32.3; one warp 41.8), lm_head 128256 x 4096 230.9 vs
// 240.1; two warps a row sat between (docs/results.md, "Session thirty on
// the H200").
constexpr int kDefaultSplit = 4;
int bf16_gemv_split();

// Whether the kernel runs this shape with `split` warps a row:
// 1 <= M <= kGemvMaxRows, K a multiple of 8 up to kGemvMaxK
// (kGemvMaxSplitK where split > 1), x and w 16-byte aligned.
bool bf16_gemv_fits(int64_t M, int64_t K, const void* x, const void* w, int split);
// x [M, K] BF16, w [N, K] BF16, bias [N] (dtype bias_t) or null, y [M, N]
// in yt (F32, F16 or BF16); F32 accumulation. split: warps per row (1, 2,
// 4; else cudaErrorInvalidValue).
cudaError_t bf16_gemv(const void* x, const void* w, const void* bias, DType bias_t, int64_t M, int64_t N, int64_t K,
                      void* y, DType yt, cudaStream_t stream, int split = kDefaultSplit);

}  // namespace xqcuda
