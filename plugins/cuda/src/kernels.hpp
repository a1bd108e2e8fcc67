// kernels.hpp: host-callable launchers of every CUDA kernel of the provider.
//
// The .cu files implement these; provider.cpp (plain C++) calls them. All
// launchers enqueue on `stream`, return the launch's cudaError_t and never
// synchronize. Pointers are device pointers. Shapes follow the ABI: a Linear
// is y[M,N] = x[M,K] · W[N,K]^T.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace xqcuda {

// Element types the kernels take at run time (a subset of xq_dtype).
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, I32 = 4, F8E4M3 = 5 };

// ---- W4A16 native layout ("cuda-w4a16-mma") --------------------------------
// Weights: uint4 words [n_blocks][chunks][8 tiles][32 lanes]; one n-tile is
// 16 output rows, a block 8 tiles (128 rows, padded with zero codes), one
// chunk 64 input columns; lane l's 16 bytes are exactly its four
// mma.m16n8k16 A fragments (k-tiles 0..3) as unsigned nibbles u = code + 8.
// A GEMM block streams one n-block: 4 KB contiguous per chunk.
// Scale/zero words: uint2 [n_blocks][n_groups][8 tiles][8] holding, for rows r and
// r+8 of the tile (r = lane/4), {scale_r | scale_r8 << 16, zb_r | zb_r8 << 16}
// in the activation type's 16-bit format, with zb = magic + 8 + zero point
// (magic 128 for bf16, 1024 for f16), so dequant is (bits|magic - zb)*scale.
struct W4Layout {
  int64_t N = 0, K = 0;       // logical shape
  int64_t n_tiles = 0;        // ceil(N / 16)
  int64_t n_blocks = 0;       // ceil(n_tiles / 8); storage holds n_blocks * 8 tiles
  int64_t chunks = 0;         // ceil(K / 64); K_pad = chunks * 64
  int64_t n_groups = 0;       // groups per row
  int gs_shift = 31;          // log2(group size); 31 for a single group
};

// Canonical (device) -> native. codes int8 [N][K] in the signed domain,
// scales f32 [N][n_groups], zp int8 [N][n_groups] or null, perm int32 [K]
// (native column c reads canonical column perm[c]) or null.
cudaError_t w4_pack(const W4Layout& L, const int8_t* codes, const int32_t* perm, uint4* qw,
                    cudaStream_t stream);
cudaError_t w4_pack_scales(const W4Layout& L, const float* scales, const int8_t* zp, uint2* sz_bf16,
                           uint2* sz_f16, cudaStream_t stream);

// Native -> dense [N][ld] of `out` type (F32/F16/BF16) using the bf16 or f16
// scale words (`sz_is_f16`). With `perm`, native column c lands in column
// perm[c] (undoes act-order); otherwise columns stay in native order.
cudaError_t w4_dequant(const W4Layout& L, const uint4* qw, const uint2* sz, bool sz_is_f16, const int32_t* perm,
                       void* out, DType out_type, int64_t ld, cudaStream_t stream);

// xs[m][c] = x[m][perm[c]] (or x[m][c]) for c < K, 0 for K <= c < ld.
cudaError_t gather_columns(const void* x, DType t, int64_t M, int64_t K, int64_t ldx, const int32_t* perm, void* xs,
                           int64_t ld, cudaStream_t stream);

// Fused W4A16 GEMM on the tensor cores (mma.sync m16n8k16). x is T [M][ldx]
// with ldx >= K_pad, zero beyond K, rows 16-byte aligned. y is [M][N] of
// `y_type` (T or F32); bias [N] of `bias_type` or null. `partial` is an f32
// workspace of splits*M*N floats when `splits` > 1 (see w4_gemm_plan).
struct W4GemmPlan {
  int mt = 1;        // token tiles of 8 per warp: 1, 2, 4, 8
  int splits = 1;    // K splits across blocks
  int64_t workspace_floats = 0;
};
W4GemmPlan w4_gemm_plan(const W4Layout& L, int64_t M, int sm_count);
cudaError_t w4_gemm(const W4Layout& L, const W4GemmPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                    const void* x, int64_t ldx, int64_t M, void* y, DType y_type, const void* bias,
                    DType bias_type, float* partial, cudaStream_t stream);

// ---- mixture of experts ----------------------------------------------------
// Routing slots (token t, choice j) are numbered s = t * top_k + j. moe_align
// sorts the n_slots slots by expert (expert_ids I32 [n_slots]) into `sorted`,
// each expert's run padded with the value n_slots to a multiple of `block`
// rows, and writes block_expert[b] = the expert of sorted rows
// [b*block, (b+1)*block), or -1 for blocks past the last used one. Buffers
// hold moe_max_blocks(n_slots, n_experts, block) blocks. Ids outside
// [0, n_experts) are dropped. n_experts <= kMoeMaxExperts.
inline constexpr int kMoeMaxExperts = 4096;
inline int64_t moe_max_blocks(int64_t n_slots, int64_t n_experts, int64_t block) {
  return (n_slots + block - 1) / block + n_experts;
}
cudaError_t moe_align(const int32_t* expert_ids, int64_t n_slots, int n_experts, int block, int32_t* sorted,
                      int32_t* block_expert, cudaStream_t stream);
// dst[t][n] = sum_j weights[t][j] * ys[t * top_k + j][n] over the slots with
// an id in [0, n_experts), in slot order (float sums, deterministic).
cudaError_t moe_combine(const float* ys, const float* weights, const int32_t* expert_ids, int64_t T, int top_k,
                        int n_experts, int64_t N, void* dst, DType dst_type, cudaStream_t stream);
// The W4A16 GEMM over sorted slots (see w4a16_gemm.cu): token tiles of 8 per
// warp `mt` (block = mt * 8 sorted rows), per-expert weight pointer tables on
// the device, activation row of slot s = x[s / x_div], output row s of y.
int w4_moe_token_tiles(int64_t slots_per_expert);
cudaError_t w4_moe_gemm(const W4Layout& L, int mt, const uint4* const* qw_table, const uint2* const* sz_table,
                        bool is_f16, const void* x, int64_t ldx, int64_t x_div, const int32_t* sorted,
                        const int32_t* block_expert, int64_t token_blocks, int64_t n_slots, void* y, DType y_type,
                        cudaStream_t stream);

// ---- foreign 4-bit layouts -> canonical (device) --------------------------
// AWQ GEMM: qweight i32 [K][N/8] (nibble order 0,2,4,6,1,3,5,7 along N),
// qzeros i32 [G][N/8] (same order, unsigned z), scales f16 [G][N].
cudaError_t awq_unpack(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales_f16, int64_t K,
                       int64_t N, int64_t group_size, int8_t* codes, float* scales, int8_t* zp,
                       cudaStream_t stream);
// GPTQ (4-bit): qweight i32 [K/8][N] (sequential along K), qzeros i32
// [G][N/8] (stored z-1 when `v1`), scales f16 [G][N]. The output scales/zp
// are per group index g (the caller keeps g_idx).
cudaError_t gptq_unpack(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales_f16, int64_t K,
                        int64_t N, int64_t n_groups, bool v1, int8_t* codes, float* scales, int8_t* zp,
                        cudaStream_t stream);

// ---- W8A8 -----------------------------------------------------------------
// Activation quantization, one block per row. Dynamic per token when
// `static_scale` <= 0: scale[m] = absmax/qmax (qmax 127 or 448), q =
// rint(x/scale) saturated. Static: q = rint(x/static_scale); scales untouched
// (may be null). out_type I8 or F8E4M3.
cudaError_t quantize_act(const void* x, DType in_type, int64_t M, int64_t K, void* q, DType out_type, float* scales,
                         float static_scale, cudaStream_t stream);

// y[m][n] = acc[m][n] * sa[m] * sw[n] * alpha + bias[n]; acc I32 or F32;
// sa/sw null -> 1 (their scalar `sa_const`/`sw_const` used instead).
cudaError_t scale_epilogue(const void* acc, DType acc_type, int64_t M, int64_t N, const float* sa, float sa_const,
                           const float* sw, float sw_const, const void* bias, DType bias_type, void* y, DType y_type,
                           cudaStream_t stream);

// Dense int8 / fp8 weight [N][K] -> out [N][K] (F32/F16/BF16) times sw[n]
// (or sw_const when sw is null).
cudaError_t dequant_rows(const void* w, DType w_type, int64_t N, int64_t K, const float* sw, float sw_const, void* out,
                         DType out_type, cudaStream_t stream);

// dst = src converted elementwise (F32/F16/BF16 both ways), n elements.
cudaError_t convert(const void* src, DType st, void* dst, DType dt, int64_t n, cudaStream_t stream);

}  // namespace xqcuda
