// w4a16_hopper.cu: the Hopper W4A16 GEMM (w4a16_hopper.hpp): the device
// repack of canonical codes into the order its register fragments read, and
// the choice among the instantiated schedules (w4a16_hopper_schedules.hpp:
// CUTLASS's mixed-input wgmma collective for int4 weights with bf16 group
// scales and offsets, bf16 activations and output).
// Compiled for sm_90a only (plugins/cuda/CMakeLists.txt).
#include "w4a16_hopper.hpp"

#include <cuda_bf16.h>

#include "w4a16_hopper_gemm.cuh"
#include "w4a16_hopper_schedules.hpp"

namespace xqcuda {
namespace {

using w4h_detail::WeightLayout;
using w4h_detail::weight_layout;

__global__ void k_w4h_pack(W4HopperLayout L, WeightLayout layout, const int8_t* __restrict__ codes,
                           const int32_t* __restrict__ perm, uint32_t* __restrict__ out) {
  const int64_t total = L.N * L.K;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i / L.K, c = i % L.K;
    const int code = codes[n * L.K + (perm ? perm[c] : c)];
    const int64_t at = layout(static_cast<int>(n), static_cast<int>(c), 0);
    // Several threads fill one word; the buffer starts zeroed.
    atomicOr(out + (at >> 3), (static_cast<uint32_t>(code) & 0xFu) << (4 * (at & 7)));
  }
}

__global__ void k_w4h_pack_scales(W4HopperLayout L, const float* __restrict__ scales, const int8_t* __restrict__ zp,
                                  __nv_bfloat16* __restrict__ s_out, __nv_bfloat16* __restrict__ z_out) {
  const int64_t total = L.N * L.n_groups;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t g = i / L.N, n = i % L.N;
    const __nv_bfloat16 s = __float2bfloat16_rn(scales[n * L.n_groups + g]);
    const float zero = zp ? static_cast<float>(zp[n * L.n_groups + g]) : 0.f;
    s_out[i] = s;
    z_out[i] = __float2bfloat16_rn(-__bfloat162float(s) * zero);
  }
}

__global__ void k_add_bias_rows(__nv_bfloat16* __restrict__ y, int64_t M, int64_t N, const void* __restrict__ bias,
                                bool bias_is_f32) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i % N;
    const float b = bias_is_f32 ? static_cast<const float*>(bias)[n]
                                : __bfloat162float(static_cast<const __nv_bfloat16*>(bias)[n]);
    y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + b);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : b > 65535LL * 16 ? 65535LL * 16 : b);
}

}  // namespace

bool w4h_supported(int64_t N, int64_t K, int64_t group_size, const char** why) {
  const char* reason = nullptr;
  if (N <= 0 || K <= 0 || N % 16 != 0) reason = "N must be a positive multiple of 16";
  else if (K % 64 != 0) reason = "K must be a multiple of 64";
  else if (group_size != K && group_size % 64 != 0) reason = "the group size must be K or a multiple of 64";
  else if (N * K > INT32_MAX) reason = "N*K must be below 2^31 (the layout's offsets are 32-bit)";
  if (why) *why = reason;
  return reason == nullptr;
}

size_t w4h_weight_bytes(const W4HopperLayout& L) { return static_cast<size_t>(L.N * L.K / 2); }

cudaError_t w4h_pack(const W4HopperLayout& L, const int8_t* codes, const int32_t* perm, void* qw,
                     cudaStream_t stream) {
  if (!w4h_supported(L.N, L.K, L.group_size, nullptr)) return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(qw, 0, w4h_weight_bytes(L), stream);
  if (e != cudaSuccess) return e;
  k_w4h_pack<<<grid_for(L.N * L.K), 256, 0, stream>>>(L, weight_layout(L), codes, perm, static_cast<uint32_t*>(qw));
  return cudaGetLastError();
}

cudaError_t w4h_pack_scales(const W4HopperLayout& L, const float* scales, const int8_t* zp, void* s_bf16,
                            void* z_bf16, cudaStream_t stream) {
  k_w4h_pack_scales<<<grid_for(L.N * L.n_groups), 256, 0, stream>>>(
      L, scales, zp, static_cast<__nv_bfloat16*>(s_bf16), static_cast<__nv_bfloat16*>(z_bf16));
  return cudaGetLastError();
}

const char* w4h_schedule_name(W4HSchedule s) {
  switch (s) {
    case W4HSchedule::Auto: return "auto";
    case W4HSchedule::Coop: return "coop";
    case W4HSchedule::Pingpong: return "pingpong";
    case W4HSchedule::Wide: return "wide";
    case W4HSchedule::Narrow: return "narrow";
    case W4HSchedule::K128: return "k128";
  }
  return "?";
}

// Auto, from bench/cuda/bench_w4_hopper.py on an H200 (bench/cuda/results/h200-w4-hopper-schedules.md):
// every schedule on the four benchmark shapes at M = 64..4096. The wide tile won every
// shape at M >= 1024 and, at M = 256, the shapes whose 128x256 tiles nearly fill the SMs
// (N = 14336, 28672), losing where they do not (N = 4096: 32 tiles); ping-pong won only
// at M = 64 on those same shapes (3-4%), lost by up to 2.3x where its tiles are few
// (it has no stream-K to spread K), and lost at M = 128; cooperative stream-K won the rest.
// Up to 32 rows, from bench/cuda/bench_w4_mid.py on an H100 (docs/cuda.md, "Narrow token
// tiles"): the K-128 cooperative tile of 16 or 32 tokens beat the 64-token ones on every
// shape where this kernel is the default there (8192x28672 at 32 rows: 70.8 against 83.5 us).
// Group 64 cannot take K steps of 128; Narrow is the same tile with K 64.
W4HSchedule w4h_resolve(const W4HopperLayout& L, int64_t M, int sm_count, W4HSchedule s) {
  const int64_t row_tiles = (L.N + 127) / 128, enough = int64_t{sm_count} * 3 / 4;
  if (s == W4HSchedule::Auto) {
    if (M <= kNarrowTokenTileMaxM) s = W4HSchedule::K128;
    else if (M >= kWideMinM || (M > 128 && row_tiles * ((M + 255) / 256) >= enough)) s = W4HSchedule::Wide;
    else if (M <= kSmallTokenTileMaxM && row_tiles >= enough) s = W4HSchedule::Pingpong;
    else s = W4HSchedule::Coop;
  }
  // The 64-token ping-pong steps K by 128; the collective needs each group to span whole
  // K steps (CUTLASS can_implement), so group 64 takes the cooperative tile instead.
  const bool k128_fits = L.group_size % 128 == 0 || L.group_size == L.K;
  if (s == W4HSchedule::Pingpong && M <= kSmallTokenTileMaxM && !k128_fits) s = W4HSchedule::Coop;
  if ((s == W4HSchedule::Narrow || s == W4HSchedule::K128) && M > kNarrowTokenTileMaxM) s = W4HSchedule::Coop;
  if (s == W4HSchedule::K128 && !k128_fits) s = W4HSchedule::Narrow;
  return s;
}

namespace {

struct Launcher {
  size_t (*workspace)(const W4HopperLayout&, int64_t, int);
  cudaError_t (*run)(const W4HopperLayout&, const void*, const void*, const void*, const void*, int64_t, void*, void*,
                     size_t, int, cudaStream_t, bool);
};

Launcher launcher(const W4HopperLayout& L, int64_t M, int sm_count, W4HSchedule s) {
  using namespace w4h_detail;
  const bool small = M <= kSmallTokenTileMaxM;
  switch (w4h_resolve(L, M, sm_count, s)) {
    case W4HSchedule::Pingpong:
      return small ? Launcher{pingpong64_workspace, pingpong64_run} : Launcher{pingpong128_workspace, pingpong128_run};
    case W4HSchedule::Wide: return Launcher{wide256_workspace, wide256_run};
    case W4HSchedule::Narrow:
      return M <= 16 ? Launcher{narrow16_workspace, narrow16_run} : Launcher{narrow32_workspace, narrow32_run};
    case W4HSchedule::K128:
      return M <= 16 ? Launcher{k128x16_workspace, k128x16_run} : Launcher{k128x32_workspace, k128x32_run};
    default: return small ? Launcher{coop64_workspace, coop64_run} : Launcher{coop128_workspace, coop128_run};
  }
}

}  // namespace

size_t w4h_workspace_bytes(const W4HopperLayout& L, int64_t M, int sm_count, W4HSchedule s) {
  return launcher(L, M, sm_count, s).workspace(L, M, sm_count);
}

cudaError_t w4h_gemm(const W4HopperLayout& L, const void* qw, const void* s_bf16, const void* z_bf16, const void* x,
                     int64_t M, void* y, const void* bias, bool bias_is_f32, void* workspace, size_t workspace_bytes,
                     int sm_count, cudaStream_t stream, W4HSchedule schedule, bool cached_params) {
  if (M <= 0) return cudaSuccess;
  if (M > INT32_MAX) return cudaErrorNotSupported;
  const cudaError_t e = launcher(L, M, sm_count, schedule)
                            .run(L, qw, s_bf16, z_bf16, x, M, y, workspace, workspace_bytes, sm_count, stream,
                                 cached_params);
  if (e != cudaSuccess || !bias) return e;
  k_add_bias_rows<<<grid_for(M * L.N), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(y), M, L.N, bias, bias_is_f32);
  return cudaGetLastError();
}

}  // namespace xqcuda
