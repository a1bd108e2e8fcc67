// moe_w4a16_grouped.hpp: the W4A16 mixture-of-experts GEMM for many tokens
// per expert on sm_90a (moe_w4a16_provider.cpp):
//   1. moe_w8a8_sort (moe_w8a8.hpp): routing slots sorted by expert, without
//      padding: per expert the offset of its run of rows, row -> slot and
//      slot -> row;
//   2. moe_w4a16_gather_rows: each sorted row's activation copied from x, so
//      each expert's rows are contiguous (the TMA loads need a plain matrix);
//   3. moe_w4a16_grouped_gemm: one CUTLASS ptr-array grouped mixed-input GEMM
//      (int4 x bf16, wgmma with the weights converted in registers) over all
//      experts, each expert's weights in the `cuda-w4a16-wgmma` copy the
//      provider already keeps (w4a16_hopper.hpp), per-expert problem sizes,
//      pointers and layouts written on the device from the sorted offsets;
//   4. moe_w8a8_scatter_rows or moe_w8a8_combine_rows back to slot order.
// The collective is CUTLASS's MainloopSm90ArrayTmaGmmaWarpSpecializedMixedInput
// (include/cutlass/gemm/collective/sm90_mma_array_tma_gmma_rs_warpspecialized_mixed_input.hpp),
// used as in CUTLASS example 69_hopper_mixed_dtype_grouped_gemm
// (69_hopper_int4_bf16_grouped_gemm.cu, the "ScaleZeroShuffled" kernel).
// Every step is a kernel sized from the shapes, so the call can be recorded
// in a CUDA graph.
//
// Built only with the CUTLASS headers (XQUANT_CUDA_MOE_W4_GROUPED); plain C++ here.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace xqcuda {

// xs [n_slots][K] BF16: sorted row r (< offsets[E]) = x[row_slot[r] / x_div]
// (x [rows][K] BF16, 16-byte aligned, K % 8 == 0). Rows past offsets[E] are
// left as they are.
cudaError_t moe_w4a16_gather_rows(const void* x, int64_t K, int64_t x_div, const int32_t* row_slot,
                                  const int32_t* offsets, int E, int64_t n_slots, void* xs, cudaStream_t stream);

// The token tile of the grouped GEMM (its wgmma N): 32 (K step 128; groups
// of a multiple of 128 or K, else it runs as T64), 64 or 128 tokens.
enum class MoeW4Tile : int { T32 = 32, T64 = 64, T128 = 128 };

// One grouped GEMM: expert e multiplies its sorted rows xs[offsets[e] ..
// offsets[e+1]) by its dequantized weights, y rows [rows][N] BF16 in the
// same sorted order. Weights per expert: hq_table[e] (packed int4,
// w4h_pack), hs_table[e] / hz_table[e] (bf16 scales and offsets [G][N],
// w4h_pack_scales); all experts [N][K] with one group size.
struct MoeW4Gemm {
  int E = 0;
  int64_t N = 0, K = 0, group_size = 0;
  const void* xs = nullptr;
  const int32_t* offsets = nullptr;
  const void* const* hq_table = nullptr;  // device [E]
  const void* const* hs_table = nullptr;  // device [E]
  const void* const* hz_table = nullptr;  // device [E]
  void* y = nullptr;
  MoeW4Tile tile = MoeW4Tile::T128;
};

// Device bytes of the per-call group tables for E experts.
size_t moe_w4a16_table_bytes(int E);
const char* moe_w4a16_tile_name(MoeW4Tile t);
// Enqueue the GEMM. `tables` of moe_w4a16_table_bytes(E) device bytes;
// `workspace(ctx, bytes)` returns the CUTLASS workspace (its per-SM TMA
// descriptors). cudaErrorNotSupported when CUTLASS refuses the problem
// (can_implement: N % 16, K % 64, group size K or a multiple of 64).
cudaError_t moe_w4a16_grouped_gemm(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                   void* workspace_ctx, int sm_count, cudaStream_t stream);

// The three instantiations (moe_w4a16_sm90_t32.cu, moe_w4a16_sm90_t64.cu,
// moe_w4a16_sm90_t128.cu) behind moe_w4a16_grouped_gemm.
cudaError_t moe_w4a16_grouped_gemm_t32(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                       void* ctx, int sm_count, cudaStream_t stream);
cudaError_t moe_w4a16_grouped_gemm_t64(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                       void* ctx, int sm_count, cudaStream_t stream);
cudaError_t moe_w4a16_grouped_gemm_t128(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                        void* ctx, int sm_count, cudaStream_t stream);

}  // namespace xqcuda
