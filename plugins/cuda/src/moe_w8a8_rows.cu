// moe_w8a8_rows.cu: the row kernels around the grouped INT8 MoE GEMM
// (moe_w8a8.hpp): the unpadded sort by expert, the per-row INT8
// quantization in sorted order, and the two ways back to slot order
// (scatter, or the weighted top-k combine). The sort follows vLLM's
// get_cutlass_moe_mm_data (csrc/quantization/cutlass_w8a8/moe/moe_data.cu):
// counts, offsets, then each slot's place.
#include "moe_w8a8.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace xqcuda {
namespace {

constexpr int kSortThreads = 1024;
constexpr int kMaxExperts = 4096;
constexpr int kRowThreads = 256;

__global__ void __launch_bounds__(kSortThreads)
    k_sort(const int32_t* __restrict__ ids, int64_t n_slots, int E, int32_t* __restrict__ offsets,
           int32_t* __restrict__ row_slot, int32_t* __restrict__ slot_row) {
  __shared__ int count[kMaxExperts];
  __shared__ int start[kMaxExperts + 1];
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int64_t s = threadIdx.x; s < n_slots; s += blockDim.x) {
    const int e = ids[s];
    if (e >= 0 && e < E) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int acc = 0;
    for (int e = 0; e < E; ++e) {
      start[e] = acc;
      acc += count[e];
    }
    start[E] = acc;
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = start[e];
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;  // reused as the fill cursor
  __syncthreads();
  for (int64_t s = threadIdx.x; s < n_slots; s += blockDim.x) {
    const int e = ids[s];
    int32_t r = -1;
    if (e >= 0 && e < E) {
      r = start[e] + atomicAdd(&count[e], 1);
      row_slot[r] = static_cast<int32_t>(s);
    }
    slot_row[s] = r;
  }
}

__device__ float block_absmax(float v) {
  __shared__ float warp_max[kRowThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < kRowThreads / 32; ++w) r = fmaxf(r, warp_max[w]);
  return r;
}

// One block per sorted row; rows past offsets[E] (slots with no expert, or
// the worst-case grid) return at once. The arithmetic is quantize_act's
// (w8a8.cu k_quantize_act16), so a row's codes equal the per-expert path's.
template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    k_quantize_rows(const T* __restrict__ x, int64_t K, int64_t x_div, const int32_t* __restrict__ row_slot,
                    const int32_t* __restrict__ offsets, int E, int8_t* __restrict__ q, float* __restrict__ scales) {
  const int64_t r = blockIdx.x;
  if (r >= offsets[E]) return;
  const int64_t src = row_slot[r] / x_div;
  const uint4* xr = reinterpret_cast<const uint4*>(x + src * K);
  const int64_t n8 = K / 8;
  auto unpack = [](const uint4& v, float (&f)[8]) {
    const T* h = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] = static_cast<float>(h[e]);
  };
  float amax = 0.f;
  for (int64_t i = threadIdx.x; i < n8; i += kRowThreads) {
    float f[8];
    unpack(xr[i], f);
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(f[e]));
  }
  amax = block_absmax(amax);
  float scale = amax / 127.f;
  if (!(scale > 0.f)) scale = 1.f;
  if (threadIdx.x == 0) scales[r] = scale;
  const float inv = 1.0f / scale;
  uint2* qr = reinterpret_cast<uint2*>(q + r * K);
  for (int64_t i = threadIdx.x; i < n8; i += kRowThreads) {
    float f[8];
    unpack(xr[i], f);
    int8_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = static_cast<int8_t>(fminf(fmaxf(rintf(f[e] * inv), -128.f), 127.f));
    qr[i] = *reinterpret_cast<const uint2*>(b);
  }
}

__global__ void k_scatter_rows(const uint4* __restrict__ ys, int64_t n16, const int32_t* __restrict__ slot_row,
                               int64_t n_slots, uint4* __restrict__ dst) {
  const int64_t total = n_slots * n16;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = i / n16, c = i % n16;
    const int32_t r = slot_row[s];
    if (r >= 0) dst[i] = ys[r * n16 + c];
  }
}

// One thread per 8 output columns of one token.
template <typename T>
__global__ void k_combine_rows(const T* __restrict__ ys, int64_t N, const int32_t* __restrict__ slot_row,
                               const float* __restrict__ w, int64_t T_, int k, T* __restrict__ dst) {
  const int64_t n8 = N / 8, total = T_ * n8;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / n8, c = (i % n8) * 8;
    float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (int j = 0; j < k; ++j) {
      const int64_t s = t * k + j;
      const int32_t r = slot_row[s];
      if (r < 0) continue;
      const float g = w[s];
      const uint4 v = *reinterpret_cast<const uint4*>(ys + r * N + c);
      const T* h = reinterpret_cast<const T*>(&v);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += g * static_cast<float>(h[e]);
    }
    uint4 out;
    T* o = reinterpret_cast<T*>(&out);
#pragma unroll
    for (int e = 0; e < 8; ++e) o[e] = static_cast<T>(acc[e]);
    *reinterpret_cast<uint4*>(dst + t * N + c) = out;
  }
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

}  // namespace

cudaError_t moe_w8a8_sort(const int32_t* expert_ids, int64_t n_slots, int E, int32_t* offsets, int32_t* row_slot,
                          int32_t* slot_row, cudaStream_t stream) {
  if (E < 1 || E > kMaxExperts || n_slots < 0) return cudaErrorInvalidValue;
  k_sort<<<1, kSortThreads, 0, stream>>>(expert_ids, n_slots, E, offsets, row_slot, slot_row);
  return cudaGetLastError();
}

cudaError_t moe_w8a8_quantize_rows(const void* x, bool is_f16, int64_t K, int64_t x_div, const int32_t* row_slot,
                                   const int32_t* offsets, int E, int64_t n_slots, int8_t* q, float* scales,
                                   cudaStream_t stream) {
  if (n_slots <= 0) return cudaSuccess;
  if (K % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 || n_slots > 2147483647LL) return cudaErrorInvalidValue;
  const unsigned grid = static_cast<unsigned>(n_slots);
  if (is_f16)
    k_quantize_rows<__half><<<grid, kRowThreads, 0, stream>>>(static_cast<const __half*>(x), K, x_div, row_slot,
                                                                offsets, E, q, scales);
  else
    k_quantize_rows<__nv_bfloat16><<<grid, kRowThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(x), K, x_div,
                                                                       row_slot, offsets, E, q, scales);
  return cudaGetLastError();
}

cudaError_t moe_w8a8_scatter_rows(const void* ys, int64_t N, const int32_t* slot_row, int64_t n_slots, void* dst,
                                  cudaStream_t stream) {
  if (n_slots <= 0) return cudaSuccess;
  if (N % 8 != 0 || reinterpret_cast<uintptr_t>(ys) % 16 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0)
    return cudaErrorInvalidValue;
  const int64_t n16 = N / 8;
  k_scatter_rows<<<grid_for(n_slots * n16, 256), 256, 0, stream>>>(static_cast<const uint4*>(ys), n16, slot_row,
                                                                   n_slots, static_cast<uint4*>(dst));
  return cudaGetLastError();
}

cudaError_t moe_w8a8_combine_rows(const void* ys, bool is_f16, int64_t N, const int32_t* slot_row,
                                  const float* weights, int64_t T, int k, void* dst, cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (N % 8 != 0 || reinterpret_cast<uintptr_t>(ys) % 16 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0)
    return cudaErrorInvalidValue;
  const unsigned grid = grid_for(T * (N / 8), 256);
  if (is_f16)
    k_combine_rows<__half><<<grid, 256, 0, stream>>>(static_cast<const __half*>(ys), N, slot_row, weights, T, k,
                                                     static_cast<__half*>(dst));
  else
    k_combine_rows<__nv_bfloat16><<<grid, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(ys), N, slot_row,
                                                            weights, T, k, static_cast<__nv_bfloat16*>(dst));
  return cudaGetLastError();
}

}  // namespace xqcuda
