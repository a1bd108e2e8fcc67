// w4a16_gemv_stream.hpp: the streaming W4A16 GEMV ("v3") for decode batches
// (M <= kW4GemvMaxM) on the stored "cuda-w4a16-mma" layout: a persistent
// grid of one wave in which every warp streams one contiguous, equal share of
// all (16-row tile, 64-column chunk) pairs of the weight. The provider takes
// it for op.i[7] = 5 or XQUANT_CUDA_W4_GEMV_VARIANT=3 (provider.cpp,
// run_w4_gemv); see w4a16_gemv_stream.cu for the design.
#pragma once

#include "kernels.hpp"
#include "w4a16_gemv.hpp"

namespace xqcuda {

// Work split of one launch. Tile t (rows 16t..16t+15) and chunk c are the
// flat index t * chunks + c; warp w takes [w * per_warp, (w + 1) * per_warp).
// A tile that one warp covers whole is written directly; the others leave
// F32 partials in slot (tile, warp - first warp of the tile) of the
// workspace (workspace_floats, written before read: no zeroing), and the
// last of the tile's warps to arrive (one counter per tile, zero before the
// launch, left zero) sums them in slot order and writes y.
struct W4GemvStreamPlan {
  int blocks = 0;
  int64_t per_warp = 0;
  int max_contrib = 1;  // warps that share one tile at most
  int64_t workspace_floats = 0;
  int64_t counters = 0;  // ints
};
// max_blocks_per_sm: 0 = as many 8-warp blocks per SM as fit at once (2 on sm_90);
// XQUANT_CUDA_W4_GEMV_STREAM_BLOCKS_PER_SM sets fewer, for measurements.
W4GemvStreamPlan w4_gemv_stream_plan(const W4Layout& L, int64_t M, bool is_f16, int sm_count,
                                     int max_blocks_per_sm = 0);

// Same contract as w4_gemv (w4a16_gemv.hpp): y[M][N] = x · W^T (+ bias),
// x T [M][ldx], ldx >= K_pad and a multiple of 8, zero beyond K, 16-byte
// aligned; 1 <= M <= kW4GemvMaxM.
cudaError_t w4_gemv_stream(const W4Layout& L, const W4GemvStreamPlan& plan, const uint4* qw, const uint2* sz,
                           bool is_f16, const void* x, int64_t ldx, int64_t M, void* y, const void* bias,
                           DType bias_type, float* partial, int* counters, cudaStream_t stream);

}  // namespace xqcuda
