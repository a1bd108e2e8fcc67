// w4a8_hopper.cu: the Hopper W4A8-FP8 GEMM (w4a8_hopper.hpp): the device
// repack of canonical codes (lookup encoding, fragment order), the channel
// scales and per-group lookup tables, and the choice among the instantiated
// token tiles (w4a8_hopper_tiles.hpp). Compiled for sm_90a only
// (plugins/cuda/CMakeLists.txt).
#include "w4a8_hopper.hpp"

#include <cuda_fp8.h>

#include "w4a8_hopper_gemm.cuh"
#include "w4a8_hopper_tiles.hpp"

namespace xqcuda {
namespace {

using w4a8_detail::WeightLayout;
using w4a8_detail::weight_layout;

// The lookup converter (mixed_input_utils.hpp lookup_table_convert) indexes
// the table with a code's low three bits and flips the sign where its top bit
// is clear; table byte j holds (j - 8) * s'. So a negative code keeps its
// two's-complement nibble (1xxx: j = v + 8), v > 0 becomes 8 - v (0xxx: the
// byte of -v, negated), and 0 stays 0 (byte 0 negated is forced to -0 there).
// CUTLASS's host version: cutlass/util/mixed_dtype_utils.hpp unified_encode_int4b.
__device__ uint32_t lookup_nibble(int v) { return v > 0 ? static_cast<uint32_t>(8 - v) : static_cast<uint32_t>(v) & 0xFu; }

__global__ void k_w4a8_pack(W4A8Layout L, WeightLayout layout, const int8_t* __restrict__ codes,
                            const int32_t* __restrict__ perm, uint32_t* __restrict__ out) {
  const int64_t total = L.N * L.K;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i / L.K, c = i % L.K;
    const int code = codes[n * L.K + (perm ? perm[c] : c)];
    const int64_t at = layout(static_cast<int>(n), static_cast<int>(c), 0);
    // Several threads fill one word; the buffer starts zeroed.
    atomicOr(out + (at >> 3), lookup_nibble(code) << (4 * (at & 7)));
  }
}

// One thread per weight row: c[n] = max_g s[n][g] / 56 (1 for an all-zero row).
__global__ void k_w4a8_channel_scales(W4A8Layout L, const float* __restrict__ scales, float* __restrict__ ch) {
  const int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (n >= L.N) return;
  float m = 0.f;
  for (int64_t g = 0; g < L.n_groups; ++g) m = fmaxf(m, fabsf(scales[n * L.n_groups + g]));
  ch[n] = m > 0.f ? m / kW4A8MaxGroupScale : 1.f;
}

// One thread per (g, n): the eight bytes fp8_rn((j - 8) * s / c), j = 0..7, one rounding of the exact product.
__global__ void k_w4a8_lut(W4A8Layout L, const float* __restrict__ scales, const float* __restrict__ ch,
                           uint2* __restrict__ lut) {
  const int64_t total = L.N * L.n_groups;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t g = i / L.N, n = i % L.N;
    const float s = scales[n * L.n_groups + g] / ch[n];
    uint32_t w[2] = {0, 0};
    for (int j = 0; j < 8; ++j) {
      const uint32_t b = __nv_cvt_float_to_fp8(static_cast<float>(j - 8) * s, __NV_SATFINITE, __NV_E4M3);
      w[j >> 2] |= b << (8 * (j & 3));
    }
    lut[i] = make_uint2(w[0], w[1]);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : b > 65535LL * 16 ? 65535LL * 16 : b);
}

struct Launcher {
  size_t (*workspace)(const W4A8Layout&, int64_t, int);
  cudaError_t (*run)(const W4A8Layout&, const w4a8_detail::PlanKey&, size_t, cudaStream_t);
};

Launcher launcher(int64_t M, W4A8Tile t) {
  using namespace w4a8_detail;
  switch (w4a8h_resolve(M, t)) {
    case W4A8Tile::T64: return {t64_workspace, t64_run};
    case W4A8Tile::T256: return {t256_workspace, t256_run};
    default: return {t128_workspace, t128_run};
  }
}

}  // namespace

bool w4a8h_supported(int64_t N, int64_t K, int64_t group_size, const char** why) {
  const char* reason = nullptr;
  if (N <= 0 || K <= 0 || N % 16 != 0) reason = "N must be a positive multiple of 16";
  else if (K % 128 != 0) reason = "K must be a multiple of 128";
  else if (group_size != K && group_size % 128 != 0) reason = "the group size must be K or a multiple of 128";
  else if (N * K > INT32_MAX) reason = "N*K must be below 2^31 (the layout's offsets are 32-bit)";
  if (why) *why = reason;
  return reason == nullptr;
}

size_t w4a8h_weight_bytes(const W4A8Layout& L) { return static_cast<size_t>(L.N * L.K / 2); }
size_t w4a8h_lut_bytes(const W4A8Layout& L) { return static_cast<size_t>(L.N * L.n_groups * 8); }

cudaError_t w4a8h_pack(const W4A8Layout& L, const int8_t* codes, const int32_t* perm, void* qw, cudaStream_t stream) {
  if (!w4a8h_supported(L.N, L.K, L.group_size, nullptr)) return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(qw, 0, w4a8h_weight_bytes(L), stream);
  if (e != cudaSuccess) return e;
  k_w4a8_pack<<<grid_for(L.N * L.K), 256, 0, stream>>>(L, weight_layout(L), codes, perm, static_cast<uint32_t*>(qw));
  return cudaGetLastError();
}

cudaError_t w4a8h_pack_scales(const W4A8Layout& L, const float* scales, void* lut, float* channel_scales,
                              cudaStream_t stream) {
  k_w4a8_channel_scales<<<grid_for(L.N), 256, 0, stream>>>(L, scales, channel_scales);
  k_w4a8_lut<<<grid_for(L.N * L.n_groups), 256, 0, stream>>>(L, scales, channel_scales, static_cast<uint2*>(lut));
  return cudaGetLastError();
}

W4A8Tile w4a8h_resolve(int64_t M, W4A8Tile t) {
  if (t != W4A8Tile::Auto) return t;
  return M <= 64 ? W4A8Tile::T64 : M < kW4A8WideMinM ? W4A8Tile::T128 : W4A8Tile::T256;
}

size_t w4a8h_workspace_bytes(const W4A8Layout& L, int64_t M, int sm_count, W4A8Tile t) {
  return launcher(M, t).workspace(L, M, sm_count);
}

cudaError_t w4a8h_gemm(const W4A8Layout& L, const void* qw, const void* lut, const float* channel_scales,
                       const void* xq, const float* x_scales, int64_t M, void* y, const float* bias, void* workspace,
                       size_t workspace_bytes, int sm_count, cudaStream_t stream, W4A8Tile t) {
  if (M <= 0) return cudaSuccess;
  if (M > INT32_MAX) return cudaErrorNotSupported;
  const w4a8_detail::PlanKey key{qw,  lut, channel_scales, xq,           x_scales, y,
                                 bias, workspace, L.N, L.K, L.group_size, M,        sm_count};
  return launcher(M, t).run(L, key, workspace_bytes, stream);
}

}  // namespace xqcuda
