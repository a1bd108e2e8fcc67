// bf16_gemv.hpp: MATMUL with BF16 weights and activations for a few rows
// (decode at batch 1..4): y[m, n] = x[m, :] . w[n, :] (+ bias[n]).
//
// At M = 1 the step is a stream over the weight; cuBLASLt's kernels reached
// only ~2.1 TB/s of an H200's ~4.3 on the thinner Llama shapes (o_proj
// 4096 x 4096). Here each warp owns output rows and reads its weight row with
// 16-byte loads, several in flight per lane, x from L1/L2, the dot products
// reduced with warp shuffles (the layout of llama.cpp's and vLLM's
// skinny-GEMM kernels for small batches).
#pragma once

#include <cstdint>

#include "kernels.hpp"

namespace xqcuda {

constexpr int64_t kGemvMaxRows = 4;

// Rows longer than this stay with cuBLASLt: on an H200 (2026-12-01, M = 1)
// the kernel read 4096-wide rows at 1.09x (q|k|v 6144 x 4096), 1.22x
// (o_proj 4096 x 4096), 0.99x (gate|up 28672 x 4096) and 1.03x (lm_head
// 128256 x 4096) cuBLASLt's rate, but 14336-wide rows (down_proj) at 0.94x:
// a warp per row leaves half the warp slots empty at N = 4096 and walks
// 56 chunks per lane, where cuBLASLt splits K.
constexpr int64_t kGemvMaxK = 8192;

// Whether the kernel runs this shape: 1 <= M <= kGemvMaxRows, K a multiple
// of 8 up to kGemvMaxK, x and w 16-byte aligned.
bool bf16_gemv_fits(int64_t M, int64_t K, const void* x, const void* w);
// x [M, K] BF16, w [N, K] BF16, bias [N] (dtype bias_t) or null, y [M, N]
// in yt (F32, F16 or BF16); F32 accumulation.
cudaError_t bf16_gemv(const void* x, const void* w, const void* bias, DType bias_t, int64_t M, int64_t N, int64_t K,
                      void* y, DType yt, cudaStream_t stream);

}  // namespace xqcuda
