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
constexpr int kRowsPerBlock = kRowThreads / 32;  // rows a block of the warp-per-row kernels

// The counts of expert ids in [0, E) of slots [s0, s1) into `local` (shared).
__device__ void count_chunk(const int32_t* __restrict__ ids, int64_t s0, int64_t s1, int E, int* local) {
  for (int e = threadIdx.x; e < E; e += blockDim.x) local[e] = 0;
  __syncthreads();
  for (int64_t s = s0 + threadIdx.x; s < s1; s += blockDim.x) {
    const int e = ids[s];
    if (e >= 0 && e < E) atomicAdd(&local[e], 1);
  }
  __syncthreads();
}

// Shared counts [E] turned into each expert's first row, and [E] the total
// (one thread; the callers synchronise around it).
__device__ void counts_to_starts(int* v, int E) {
  if (threadIdx.x != 0) return;
  int acc = 0;
  for (int e = 0; e < E; ++e) {
    const int c = v[e];
    v[e] = acc;
    acc += c;
  }
  v[E] = acc;
}

// Slots [s0, s1) placed: slot s of expert e gets row first[e] + the next
// value of fill[e] (shared, from 0); ids outside [0, E) get row -1.
__device__ void place_chunk(const int32_t* __restrict__ ids, int64_t s0, int64_t s1, int E, const int* first,
                            int* fill, int32_t* __restrict__ row_slot, int32_t* __restrict__ slot_row) {
  for (int64_t s = s0 + threadIdx.x; s < s1; s += blockDim.x) {
    const int e = ids[s];
    int32_t r = -1;
    if (e >= 0 && e < E) {
      r = first[e] + atomicAdd(&fill[e], 1);
      row_slot[r] = static_cast<int32_t>(s);
    }
    slot_row[s] = r;
  }
}

// The one-block sort, for up to kSortOneBlockMax slots (decode steps: one
// launch). Past that its shared-memory atomics on one SM are the cost
// (52-61 us for 32,768 slots, Qwen3-30B's 4,096 tokens x top-8, of a ~400 us
// W8A8 MoE call on an H200; ncu, 2026-12-02), so the many-block sort below
// spreads them over a block per kSortChunk slots.
__global__ void __launch_bounds__(kSortThreads)
    k_sort(const int32_t* __restrict__ ids, int64_t n_slots, int E, int32_t* __restrict__ offsets,
           int32_t* __restrict__ row_slot, int32_t* __restrict__ slot_row) {
  __shared__ int start[kMaxExperts + 1];
  __shared__ int fill[kMaxExperts];
  count_chunk(ids, 0, n_slots, E, start);
  counts_to_starts(start, E);
  for (int e = threadIdx.x; e < E; e += blockDim.x) fill[e] = 0;
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = start[e];
  place_chunk(ids, 0, n_slots, E, start, fill, row_slot, slot_row);
}

// The many-block sort, three launches after zeroing `cursor` [E]:
// k_sort_count adds each block's per-expert counts of its kSortChunk slots
// into cursor; k_sort_scan turns them into offsets and resets cursor to
// each expert's first row; k_sort_place counts its chunk again, reserves
// each expert's rows for the chunk with one global atomic, and places its
// slots. Rows within an expert come in no fixed order (as in the one-block
// sort): every consumer reads a row through row_slot / slot_row, and each
// row's result depends on that row alone.
constexpr int64_t kSortOneBlockMax = 8192;
constexpr int kSortChunk = 4096;

__device__ __forceinline__ int64_t chunk_end(int64_t s0, int64_t n_slots) {
  return s0 + kSortChunk < n_slots ? s0 + kSortChunk : n_slots;
}

__global__ void __launch_bounds__(kSortThreads)
    k_sort_count(const int32_t* __restrict__ ids, int64_t n_slots, int E, int32_t* __restrict__ counts) {
  __shared__ int local[kMaxExperts];
  const int64_t s0 = static_cast<int64_t>(blockIdx.x) * kSortChunk;
  count_chunk(ids, s0, chunk_end(s0, n_slots), E, local);
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (local[e] != 0) atomicAdd(&counts[e], local[e]);
}

__global__ void __launch_bounds__(kSortThreads) k_sort_scan(int E, int32_t* __restrict__ offsets,
                                                            int32_t* __restrict__ cursor) {
  __shared__ int start[kMaxExperts + 1];
  for (int e = threadIdx.x; e < E; e += blockDim.x) start[e] = cursor[e];
  __syncthreads();
  counts_to_starts(start, E);
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = start[e];
  for (int e = threadIdx.x; e < E; e += blockDim.x) cursor[e] = start[e];
}

__global__ void __launch_bounds__(kSortThreads)
    k_sort_place(const int32_t* __restrict__ ids, int64_t n_slots, int E, int32_t* __restrict__ cursor,
                 int32_t* __restrict__ row_slot, int32_t* __restrict__ slot_row) {
  __shared__ int local[kMaxExperts];
  __shared__ int first[kMaxExperts];
  const int64_t s0 = static_cast<int64_t>(blockIdx.x) * kSortChunk, s1 = chunk_end(s0, n_slots);
  count_chunk(ids, s0, s1, E, local);
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    if (local[e] != 0) first[e] = atomicAdd(&cursor[e], local[e]);
    local[e] = 0;  // this thread's expert: reused as the block's fill cursor
  }
  __syncthreads();
  place_chunk(ids, s0, s1, E, first, local, row_slot, slot_row);
}

// Rows past offsets[E] (slots with no expert, or the worst-case grid) return
// at once. The arithmetic is quantize_act's (w8a8.cu k_quantize_act16), so a
// row's codes equal the per-expert path's. Two shapes of the same work:
// a block per row (long rows: Mixtral's K = 4096 and 14,336), and a warp per
// row, kRowsPerBlock rows a block, for rows of at most kWarpRowMaxK
// (Qwen3-30B's 2,048 and 768): there a block per row had been 123 us for
// 32,768 rows of 2,048, mostly waiting on its two barriers, and a warp per
// row 101 us (ncu on an H200, 2026-12-02), while Mixtral's rows were up to
// 15% slower a warp each. Where each token feeds top_k sorted rows (x_div >
// 1) and the sort has many slots, the tokens are quantized once into a
// scratch buffer and their INT8 rows gathered: one read of x, not top_k.
constexpr int64_t kWarpRowMaxK = 2048;

template <typename T>
__device__ __forceinline__ void unpack8(const uint4& v, float (&f)[8]) {
  const T* h = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int e = 0; e < 8; ++e) f[e] = static_cast<float>(h[e]);
}

// Row xr's chunks [first, n8) in steps of `stride` quantized with `inv` into qr.
template <typename T>
__device__ __forceinline__ void quantize_chunks(const uint4* xr, int64_t first, int64_t n8, int stride, float inv,
                                                uint2* qr) {
#pragma unroll 4
  for (int64_t i = first; i < n8; i += stride) {
    float f[8];
    unpack8<T>(xr[i], f);
    int8_t b[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) b[e] = static_cast<int8_t>(fminf(fmaxf(rintf(f[e] * inv), -128.f), 127.f));
    qr[i] = *reinterpret_cast<const uint2*>(b);
  }
}

template <typename T>
__device__ __forceinline__ float chunks_absmax(const uint4* xr, int64_t first, int64_t n8, int stride) {
  float amax = 0.f;
#pragma unroll 4
  for (int64_t i = first; i < n8; i += stride) {
    float f[8];
    unpack8<T>(xr[i], f);
#pragma unroll
    for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(f[e]));
  }
  return amax;
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

__device__ __forceinline__ float row_scale(float amax) {
  const float scale = amax / 127.f;
  return scale > 0.f ? scale : 1.f;
}

// Which x row a quantized row r reads: sorted row r < offsets[E] reads
// x[row_slot[r] / x_div]; with no row_slot, row r < n_rows reads x[r] (the
// tokens quantized once, below).
struct RowMap {
  const int32_t* row_slot = nullptr;
  const int32_t* offsets = nullptr;
  int E = 0;
  int64_t x_div = 1;
  int64_t n_rows = 0;  // the grid's rows
  __device__ __forceinline__ bool past_end(int64_t r) const {
    return r >= n_rows || (row_slot && r >= offsets[E]);
  }
  __device__ __forceinline__ int64_t x_row(int64_t r) const { return row_slot ? row_slot[r] / x_div : r; }
};

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    k_quantize_rows(const T* __restrict__ x, int64_t K, RowMap map, int8_t* __restrict__ q,
                    float* __restrict__ scales) {
  const int64_t r = blockIdx.x;
  if (map.past_end(r)) return;
  const uint4* xr = reinterpret_cast<const uint4*>(x + map.x_row(r) * K);
  const float scale = row_scale(block_absmax(chunks_absmax<T>(xr, threadIdx.x, K / 8, kRowThreads)));
  if (threadIdx.x == 0) scales[r] = scale;
  quantize_chunks<T>(xr, threadIdx.x, K / 8, kRowThreads, 1.0f / scale, reinterpret_cast<uint2*>(q + r * K));
}

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    k_quantize_rows_warp(const T* __restrict__ x, int64_t K, RowMap map, int8_t* __restrict__ q,
                         float* __restrict__ scales) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (map.past_end(r)) return;
  const uint4* xr = reinterpret_cast<const uint4*>(x + map.x_row(r) * K);
  float amax = chunks_absmax<T>(xr, lane, K / 8, 32);
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float scale = row_scale(amax);
  if (lane == 0) scales[r] = scale;
  quantize_chunks<T>(xr, lane, K / 8, 32, 1.0f / scale, reinterpret_cast<uint2*>(q + r * K));
}

template <typename T>
void launch_quantize_rows(const void* x, int64_t K, const RowMap& map, int8_t* q, float* scales, cudaStream_t stream) {
  const T* xt = static_cast<const T*>(x);
  if (K <= kWarpRowMaxK) {
    const auto grid = static_cast<unsigned>((map.n_rows + kRowsPerBlock - 1) / kRowsPerBlock);
    k_quantize_rows_warp<T><<<grid, kRowThreads, 0, stream>>>(xt, K, map, q, scales);
  } else {
    k_quantize_rows<T><<<static_cast<unsigned>(map.n_rows), kRowThreads, 0, stream>>>(xt, K, map, q, scales);
  }
}

// Sorted row r copies its token's INT8 row and scale (quantized once above):
// a warp per row, 16-byte chunks (K % 16 == 0).
__global__ void __launch_bounds__(kRowThreads)
    k_gather_quantized(const int8_t* __restrict__ q_tok, const float* __restrict__ s_tok, int64_t K, RowMap map,
                       int8_t* __restrict__ q, float* __restrict__ scales) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (map.past_end(r)) return;
  const int64_t t = map.x_row(r);
  const uint4* src = reinterpret_cast<const uint4*>(q_tok + t * K);
  uint4* dst = reinterpret_cast<uint4*>(q + r * K);
#pragma unroll 4
  for (int64_t i = lane; i < K / 16; i += 32) dst[i] = src[i];
  if (lane == 0) scales[r] = s_tok[t];
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
                          int32_t* slot_row, int32_t* cursor, cudaStream_t stream) {
  if (E < 1 || E > kMaxExperts || n_slots < 0 || n_slots > 2147483647LL) return cudaErrorInvalidValue;
  if (n_slots <= kSortOneBlockMax) {
    k_sort<<<1, kSortThreads, 0, stream>>>(expert_ids, n_slots, E, offsets, row_slot, slot_row);
    return cudaGetLastError();
  }
  const auto blocks = static_cast<unsigned>((n_slots + kSortChunk - 1) / kSortChunk);
  cudaError_t e = cudaMemsetAsync(cursor, 0, static_cast<size_t>(E) * sizeof(int32_t), stream);
  if (e != cudaSuccess) return e;
  k_sort_count<<<blocks, kSortThreads, 0, stream>>>(expert_ids, n_slots, E, cursor);
  k_sort_scan<<<1, kSortThreads, 0, stream>>>(E, offsets, cursor);
  k_sort_place<<<blocks, kSortThreads, 0, stream>>>(expert_ids, n_slots, E, cursor, row_slot, slot_row);
  return cudaGetLastError();
}

size_t moe_w8a8_token_scratch_bytes(int64_t n_tokens, int64_t K) {
  return static_cast<size_t>((n_tokens * K + 15) / 16 * 16) + static_cast<size_t>(n_tokens) * sizeof(float);
}

cudaError_t moe_w8a8_quantize_rows(const void* x, bool is_f16, int64_t K, int64_t x_div, const int32_t* row_slot,
                                   const int32_t* offsets, int E, int64_t n_slots, int8_t* q, float* scales,
                                   void* token_scratch, cudaStream_t stream) {
  if (n_slots <= 0) return cudaSuccess;
  if (K % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 || n_slots > 2147483647LL) return cudaErrorInvalidValue;
  RowMap sorted;
  sorted.row_slot = row_slot, sorted.offsets = offsets, sorted.E = E, sorted.x_div = x_div, sorted.n_rows = n_slots;
  auto quantize = [&](const RowMap& map, int8_t* dq, float* ds) {
    if (is_f16) launch_quantize_rows<__half>(x, K, map, dq, ds, stream);
    else launch_quantize_rows<__nv_bfloat16>(x, K, map, dq, ds, stream);
  };
  const bool tokens_once = token_scratch && x_div > 1 && n_slots > kSortOneBlockMax && K % 16 == 0 &&
                           reinterpret_cast<uintptr_t>(token_scratch) % 16 == 0;
  if (!tokens_once) {
    quantize(sorted, q, scales);
    return cudaGetLastError();
  }
  RowMap tokens;
  tokens.n_rows = n_slots / x_div;
  auto* q_tok = static_cast<int8_t*>(token_scratch);
  auto* s_tok = reinterpret_cast<float*>(q_tok + (tokens.n_rows * K + 15) / 16 * 16);
  quantize(tokens, q_tok, s_tok);
  const auto grid = static_cast<unsigned>((n_slots + kRowsPerBlock - 1) / kRowsPerBlock);
  k_gather_quantized<<<grid, kRowThreads, 0, stream>>>(q_tok, s_tok, K, sorted, q, scales);
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
