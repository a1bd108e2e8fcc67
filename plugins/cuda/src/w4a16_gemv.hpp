// w4a16_gemv.hpp: the W4A16 GEMV for decode batches (M <= kW4GemvMaxM) on
// the stored "cuda-w4a16-mma" layout (see kernels.hpp, W4Layout). The
// provider picks it for small M (provider.cpp, run_qmatmul_w4).
#pragma once

#include "kernels.hpp"

namespace xqcuda {

// Tokens one launch takes: one mma n8 tile.
inline constexpr int64_t kW4GemvMaxM = 8;

// Split of the weight's K chunks over thread blocks: `splits` blocks per
// 128-row n-block, `chunks_per_split` 64-column chunks each. With splits > 1
// the blocks write f32 partials (workspace_floats of them) and the last block
// of each n-block to finish sums them (one counter per n-block).
struct W4GemvPlan {
  int splits = 1;
  int chunks_per_split = 0;
  int64_t workspace_floats = 0;
  int64_t counters = 0;  // ints, zero before the launch; the kernel leaves them zero
  int batches = 2;  // register batches per warp: 2 = "v2" (default), 1 = "v1"
};
// blocks_per_sm: how many blocks in all, per SM, the split aims at (12 by
// default; XQUANT_CUDA_W4_GEMV_BLOCKS_PER_SM overrides it for measurements).
inline constexpr int kW4GemvBlocksPerSm = 12;
W4GemvPlan w4_gemv_plan(const W4Layout& L, int64_t M, int sm_count, int blocks_per_sm = kW4GemvBlocksPerSm);

// y[M][N] (y_type = the activation type T) = x · W^T (+ bias). x is T
// [M][ldx], ldx >= K_pad and a multiple of 8, zero beyond K, 16-byte aligned
// (what provider.cpp's gather_columns gives). 1 <= M <= kW4GemvMaxM.
cudaError_t w4_gemv(const W4Layout& L, const W4GemvPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                    const void* x, int64_t ldx, int64_t M, void* y, const void* bias, DType bias_type, float* partial,
                    int* counters, cudaStream_t stream);

}  // namespace xqcuda
