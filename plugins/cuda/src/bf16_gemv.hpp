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

// Whether the kernel runs this shape: 1 <= M <= kGemvMaxRows, K a multiple
// of 8, x and w 16-byte aligned.
bool bf16_gemv_fits(int64_t M, int64_t K, const void* x, const void* w);
// x [M, K] BF16, w [N, K] BF16, bias [N] (dtype bias_t) or null, y [M, N]
// in yt (F32, F16 or BF16); F32 accumulation.
cudaError_t bf16_gemv(const void* x, const void* w, const void* bias, DType bias_t, int64_t M, int64_t N, int64_t K,
                      void* y, DType yt, cudaStream_t stream);

}  // namespace xqcuda
