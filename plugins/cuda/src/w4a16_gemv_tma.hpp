// w4a16_gemv_tma.hpp: the TMA-ring W4A16 GEMV ("v4") for decode batches
// (M <= kW4GemvTmaMaxM) on the stored "cuda-w4a16-mma" layout, sm_90 only: each
// thread block streams one contiguous byte range of the weight through a
// shared-memory ring filled by 1-D bulk copies (cp.async.bulk). The provider
// takes it for op.i[7] = 7 or XQUANT_CUDA_W4_GEMV_VARIANT=4 (provider.cpp,
// run_w4_gemv); see w4a16_gemv_tma.cu for the design.
#pragma once

#include "kernels.hpp"
#include "w4a16_gemv.hpp"

namespace xqcuda {

// The most rows v4 takes: two token tiles of the mma's 8 (w4a16_gemv_tma.cu,
// token_tiles), against kW4GemvMaxM = 8 of the other GEMVs.
inline constexpr int64_t kW4GemvTmaMaxM = 16;

// Work split of one launch. The weight's (n-block, 64-column chunk) pairs,
// numbered f = n_block * chunks + chunk (4 KB each, contiguous in that
// order), are cut into equal ranges of per_cta; block b streams
// [b * per_cta, (b + 1) * per_cta). An n-block one block covers whole is
// written directly; the others leave F32 partials in slot (16-row tile,
// block - first block of the n-block) of the workspace (written before read:
// no zeroing), and the last block to arrive at each tile (one counter per
// tile, zero before the launch, left zero) sums them in slot order.
//
// N-block parts (parts >= 1): block b takes part b % parts of n-block
// b / parts, chunks [part * per_cta, min((part + 1) * per_cta, chunks)): at
// most one flush a block. With one part every block writes its n-block
// directly; with more, either the parts form a thread-block cluster whose
// blocks sum each tile's partials through distributed shared memory (dsmem:
// red_bytes of slots per block, no workspace or counters), or they use the
// workspace and counters as stream-K does (slot = part).
struct W4GemvTmaPlan {
  int blocks = 0;
  int64_t per_cta = 0;  // chunks per block
  int parts = 0;        // 0: stream-K ranges; >= 1: blocks per n-block
  bool dsmem = false;   // the parts of an n-block are one cluster (parts <= 8)
  int red_bytes = 0;    // dsmem: the reduction's slots per block
  int clusters_resident = 0;  // diagnostics: clusters of `parts` blocks that fit at once, where asked
  int max_contrib = 1;  // blocks that share one n-block at most
  int64_t workspace_floats = 0;
  int64_t counters = 0;  // ints
  int stages = 0;        // ring slots
  int stage_bytes = 0;   // one slot: codes (32 KB), scale words, x sums, then x from x_off
  int x_off = 0;
  int probe = 0;  // measurement only: 1 = stream the ring without the math (bench/cuda/w4_gemv_tma_harness.cu)
  int smem_bytes = 0;    // dynamic shared memory per block
};

// Whether the device runs the kernel: compute capability 9.x and the plugin built with sm_90 code
// (the kernel needs the bulk copies; the sm_80 build of it traps).
bool w4_gemv_tma_supported(int cc_major);

// How blocks split the weight: kAuto takes whichever of stream-K and n-block
// parts the plan's cost model puts first (a block's range plus its flushes,
// in chunks: w4a16_gemv_tma.cu, kGlobalFlushChunks); the others force a mode
// (parts only where there are no more n-blocks than resident blocks; kParts
// sums in a cluster where all the clusters fit at once, kPartsGlobal never).
// parts > 0 (measurements) asks for that many parts a n-block, where it fits.
enum class W4GemvTmaSplit { kAuto, kStreamK, kParts, kPartsGlobal };

// stages: ring slots (0 = the default: the deepest ring of <= 4 that keeps 2
// blocks on an SM; a depth asked for is cut to what fits one block);
// max_blocks_per_sm: 0 = as many as fit at once. XQUANT_CUDA_W4_GEMV_TMA_STAGES / _TMA_BLOCKS_PER_SM set them
// (provider.cpp), for measurements.
W4GemvTmaPlan w4_gemv_tma_plan(const W4Layout& L, int64_t M, bool is_f16, int sm_count, int stages = 0,
                               int max_blocks_per_sm = 0, W4GemvTmaSplit split = W4GemvTmaSplit::kAuto,
                               int parts = 0);

// Same contract as w4_gemv (w4a16_gemv.hpp): y[M][N] = x · W^T (+ bias),
// x T [M][ldx], ldx >= K_pad and a multiple of 8, zero beyond K, 16-byte
// aligned; 1 <= M <= kW4GemvTmaMaxM; groups of 16 or more (gs_shift >= 4).
cudaError_t w4_gemv_tma(const W4Layout& L, const W4GemvTmaPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                        const void* x, int64_t ldx, int64_t M, void* y, const void* bias, DType bias_type,
                        float* partial, int* counters, cudaStream_t stream);

}  // namespace xqcuda
