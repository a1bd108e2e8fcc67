// w4a8_hopper.hpp: the Hopper (sm_90a) W4A8-FP8 GEMM, layout "cuda-w4a8-fp8-wgmma":
// INT4 weights with per-group scales, activations quantized per token to FP8
// E4M3, BF16 output.
//
// CUTLASS's mixed-input warp-specialised collective in its lookup-table mode
// (cutlass/detail/collective/mixed_input_utils.hpp lookup_table_convert;
// example 55_hopper_mixed_dtype_gemm/55_hopper_int4_fp8_gemm.cu, and vLLM's
// csrc/quantization/cutlass_w4a8): every weight group carries eight FP8 bytes,
// the products -8*s' .. -1*s' of its (normalised) scale, and the converter
// picks a code's FP8 value with two byte permutes (prmt) instead of a convert
// and a multiply; positive codes take the same byte with the sign flipped.
// The FP8 operand then goes to the FP8 wgmma (twice the BF16 rate).
//
// Where the group scale is applied decides the accuracy: the weight the wgmma
// sees is fp8_rn(q * s[n][g] / c[n]), one E4M3 rounding of the exact product
// (3 mantissa bits: at most 2^-4 relative), with c[n] = max_g s[n][g] / 56 so
// that |8 * s'| <= 448 (E4M3's largest finite). c[n] (f32) and the per-token
// activation scale (f32) are applied to the f32 accumulator in the epilogue:
//   y[m][n] = s_x[m] * c[n] * sum_k fp8(x[m][k] / s_x[m]) * fp8(q[n][k] * s'[n][g(k)]) (+ bias[n])
// vLLM instead rounds the group scale itself to E4M3 first and then the
// product (two roundings); here the LUT bytes are built from the f32 scale.
// Symmetric weights only: the collective has no zero-point path in this mode.
//
// Built only when CMake finds the CUTLASS headers (XQUANT_CUDA_HOPPER_W4A8 is
// defined then); its kernels exist for sm_90a only. Computed swapped like the
// W4A16 Hopper GEMM (w4a16_hopper.hpp): y^T[N][M] = W[N][K] * x^T, so the
// 4-bit operand is wgmma's register-sourced A.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace xqcuda {

// Shape of one weight in the W4A8 layout.
struct W4A8Layout {
  int64_t N = 0, K = 0;
  int64_t group_size = 0;  // K for a single group per row
  int64_t n_groups = 0;    // ceil(K / group_size)
};

// The largest normalised group scale s' (= s / c): 8 * 56 = 448, E4M3's largest finite value.
constexpr float kW4A8MaxGroupScale = 56.f;

// Whether the kernel takes this weight: N % 16 == 0, K % 128 == 0 (the K tile
// of 128 FP8 bytes), a group size that is K or a multiple of 128 (each group
// spans whole K tiles: CUTLASS can_implement), N*K < 2^31. `why` (if not null)
// names the failed rule.
bool w4a8h_supported(int64_t N, int64_t K, int64_t group_size, const char** why);

// Bytes of the packed codes (N*K/2), of the lookup table (N*G*8) and of the
// channel scales (N f32).
size_t w4a8h_weight_bytes(const W4A8Layout& L);
size_t w4a8h_lut_bytes(const W4A8Layout& L);

// Canonical (device) -> packed. codes int8 [N][K] signed [-8, 7]; perm int32
// [K] or null (packed column c holds canonical column perm[c]; the
// activations are gathered with the same perm). Each code is re-encoded for
// the lookup (negative codes as they are, code v > 0 as 8 - v, 0 as 0: the
// low three bits index the table, the top bit picks the sign) and placed where
// the FP8 wgmma's register fragment reads it (every thread's 8 codes of one
// k32 step in one 32-bit word).
cudaError_t w4a8h_pack(const W4A8Layout& L, const int8_t* codes, const int32_t* perm, void* qw, cudaStream_t stream);

// Group scales f32 [N][G] (positive) -> channel scales c f32 [N] and the
// lookup table [G][N][8] E4M3 bytes: byte j = fp8_rn((j - 8) * s[n][g] / c[n]).
cudaError_t w4a8h_pack_scales(const W4A8Layout& L, const float* scales, void* lut, float* channel_scales,
                              cudaStream_t stream);

// Token tiles (CUTLASS cooperative stream-K, 128 weight rows x T tokens x K 128):
// Auto picks 64 for M <= 64, 128 below kW4A8WideMinM, 256 from there.
enum class W4A8Tile : int { Auto = 0, T64 = 64, T128 = 128, T256 = 256 };
constexpr int64_t kW4A8WideMinM = 1024;
W4A8Tile w4a8h_resolve(int64_t M, W4A8Tile t);

// y[M][N] (bf16) = the formula above. xq: E4M3 [M][K] (rows K bytes apart,
// 16-byte aligned), x_scales f32 [M] (quantize_act, kernels.hpp, makes both),
// bias f32 [N] or null, fused into the epilogue. The workspace (stream-K
// partials and locks) must hold w4a8h_workspace_bytes(L, M, sm_count, tile).
// Kernel parameters are built once per (all pointers, M, SM count, tile) and
// reused. Returns cudaErrorNotSupported when CUTLASS refuses the problem, before
// anything is launched.
size_t w4a8h_workspace_bytes(const W4A8Layout& L, int64_t M, int sm_count, W4A8Tile t = W4A8Tile::Auto);
cudaError_t w4a8h_gemm(const W4A8Layout& L, const void* qw, const void* lut, const float* channel_scales,
                       const void* xq, const float* x_scales, int64_t M, void* y, const float* bias, void* workspace,
                       size_t workspace_bytes, int sm_count, cudaStream_t stream, W4A8Tile t = W4A8Tile::Auto);

}  // namespace xqcuda
