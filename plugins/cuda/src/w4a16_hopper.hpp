// w4a16_hopper.hpp: the Hopper (sm_90a) W4A16 GEMM, layout "cuda-w4a16-wgmma".
//
// A CUTLASS mixed-input warp-specialised GEMM: TMA loads of int4 weights and
// BF16 activations, the weights converted and scaled in registers and fed to
// wgmma as the register-sourced operand (CUTLASS
// include/cutlass/gemm/collective/sm90_mma_tma_gmma_rs_warpspecialized_mixed_input.hpp,
// example 55_hopper_mixed_dtype_gemm). Built only when CMake finds the
// CUTLASS headers (then XQUANT_CUDA_HOPPER_W4 is defined); its kernels exist
// for sm_90a only, so callers dispatch here only on compute capability 9.0.
//
// The GEMM is computed swapped, y^T[N][M] = W[N][K] * x^T, so the 4-bit
// operand is wgmma's A (the one that may come from registers) and the output
// tile's long side runs along the weights' N; y^T column-major is y[M][N].
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace xqcuda {

// Shape of one weight in the wgmma layout.
struct W4HopperLayout {
  int64_t N = 0, K = 0;
  int64_t group_size = 0;  // K for a single group per row
  int64_t n_groups = 0;    // ceil(K / group_size)
};

// Whether the kernel takes this weight: N % 16 == 0 (the reorder atom's
// rows, and 16-byte output rows), K % 64 == 0 (the K tile) and a group size
// that is K or a multiple of 64, N*K < 2^31. `why` (if not null) names the
// failed rule.
bool w4h_supported(int64_t N, int64_t K, int64_t group_size, const char** why);

// Bytes of the packed codes: N*K/2, int4 in the order the kernel's wgmma
// fragments read them (every thread's 8 codes of one k16 step in one 32-bit
// word, nibbles in the order 0,2,4,6,1,3,5,7 so the int4->bf16 conversion
// extracts pairs with one shift).
size_t w4h_weight_bytes(const W4HopperLayout& L);

// Canonical (device) -> packed. codes int8 [N][K] signed [-8, 7]; perm int32
// [K] or null (packed column c holds canonical column perm[c], as for the mma
// layout: the activations are gathered with the same perm).
cudaError_t w4h_pack(const W4HopperLayout& L, const int8_t* codes, const int32_t* perm, void* qw,
                     cudaStream_t stream);

// Scales f32 [N][G] and zero points int8 [N][G] (or null) -> bf16 scales and
// bf16 offsets, both [G][N] (N fastest, the collective's scale layout). The
// collective dequantizes as w = s*q + z, so z = -s*zp (s rounded to bf16
// first; zero for symmetric weights).
cudaError_t w4h_pack_scales(const W4HopperLayout& L, const float* scales, const int8_t* zp, void* s_bf16,
                            void* z_bf16, cudaStream_t stream);

// Schedules (w4a16_hopper_schedules.hpp), chosen per call:
// - Coop: cooperative, stream-K; 128 weight rows x 64 tokens (M <= 64) or x 128
//   tokens, K step 64 (the kernel's first configuration).
// - Pingpong: ping-pong (one warp group converts while the other multiplies),
//   persistent; 128 x 64 x K 128 (M <= 64) or 128 x 128 x K 64.
// - Wide: cooperative, stream-K; 128 x 256 tokens x K 64.
// - Narrow: cooperative, stream-K; 128 weight rows x 16 tokens (M <= 16) or
//   x 32 (M <= 32), K step 64; above 32 rows it stands for Coop.
// - K128: the same tiles as Narrow with K step 128; above 32 rows it stands
//   for Coop.
// - Auto (measured, see w4h_resolve): K128 for M <= 32; Wide for M >= kWideMinM, and for
//   M > 128 where its tiles fill 3/4 of the SMs; Pingpong for M <= 64 where
//   its tiles do (it has no stream-K); Coop otherwise.
// Ping-pong at M <= 64 and K128 (K step 128) take groups that are a multiple
// of 128 (or K); for group 64 they resolve to Coop and Narrow.
enum class W4HSchedule : int { Auto = 0, Coop = 1, Pingpong = 2, Wide = 3, Narrow = 4, K128 = 5 };
constexpr int64_t kNarrowTokenTileMaxM = 32;  // Narrow's and K128's largest token tile
constexpr int64_t kSmallTokenTileMaxM = 64;  // token tile 64 up to here, 128 (or 256) above
constexpr int64_t kWideMinM = 1024;
const char* w4h_schedule_name(W4HSchedule s);
// The schedule `s` stands for at this shape (Auto resolved).
W4HSchedule w4h_resolve(const W4HopperLayout& L, int64_t M, int sm_count, W4HSchedule s);

// y[M][N] (bf16) = x[M][K] (bf16, rows K elements apart, 16-byte aligned) *
// dequant(W)^T (+ bias[N] of `bias_is_f32` ? f32 : bf16, or null). The
// workspace (stream-K partials and locks) must hold
// w4h_workspace_bytes(L, M, sm_count, schedule). Kernel parameters are built
// once per (weights, scales, M, workspace, SM count) and reused, each call
// replacing only the x and y addresses in their TMA descriptors;
// `cached_params` = false builds them on every call (CUTLASS's initialize),
// for measuring the difference. Returns cudaErrorNotSupported when CUTLASS
// refuses the problem (can_implement), before anything is launched.
size_t w4h_workspace_bytes(const W4HopperLayout& L, int64_t M, int sm_count, W4HSchedule s = W4HSchedule::Auto);
cudaError_t w4h_gemm(const W4HopperLayout& L, const void* qw, const void* s_bf16, const void* z_bf16, const void* x,
                     int64_t M, void* y, const void* bias, bool bias_is_f32, void* workspace, size_t workspace_bytes,
                     int sm_count, cudaStream_t stream, W4HSchedule schedule = W4HSchedule::Auto,
                     bool cached_params = true);

}  // namespace xqcuda
