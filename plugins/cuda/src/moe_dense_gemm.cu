// moe_dense_gemm.cu: the grouped GEMM of dense (BF16/F16) mixture-of-experts
// weights: every expert's rows in one launch over the routing slots sorted
// by expert (moe_align, moe_routing.cu), each thread block one token block of
// one expert times a 64-column tile of that expert's weight, on tensor cores
// (WMMA 16x16x16, F32 accumulation), K in chunks of 64. The dense counterpart of w4_moe_gemm
// (w4a16_gemm.cu) and of vLLM's fused_moe Triton kernel
// (vllm/model_executor/layers/fused_moe/fused_moe.py, fused_moe_kernel).
#include "moe_dense_gemm.hpp"

#include "common.cuh"

#include <mma.h>

namespace xqcuda {

namespace {

constexpr int kBN = 64, kBK = 64, kThreads = 128;
constexpr int kLds = kBK + 8;  // padded shared rows: 144 bytes, 16-byte aligned, fewer bank conflicts
constexpr int kLdc = kBN + 4;
constexpr int kVecs = kBK / 8;  // uint4 (8 values) per row of a K chunk

// Block b of `sorted` holds MT*16 slots of expert block_expert[b] (padding
// slots = n_slots); blockIdx.y picks columns [64*y, 64*y + 64) of N. Row s
// of y (slot s) = x[s / x_div] . W_e^T. K is a multiple of 8 and every
// pointer 16-byte aligned (checked by the caller), so a uint4 moves 8
// values. The next K chunk is loaded into registers while the tensor cores
// work on the current one in shared memory.
template <typename T, int MT>
__global__ void __launch_bounds__(kThreads)
    k_moe_dense_gemm(const T* const* __restrict__ w_table, const T* __restrict__ x, int64_t x_div, int64_t K,
                     int64_t N, const int32_t* __restrict__ sorted, const int32_t* __restrict__ block_expert,
                     int64_t n_slots, void* __restrict__ y, DType y_type) {
  using namespace nvcuda;
  constexpr int BM = MT * 16;
  constexpr int kA = BM * kVecs / kThreads, kB = kBN * kVecs / kThreads;  // uint4 per thread per chunk
  static_assert(BM * kVecs % kThreads == 0 && kBN * kVecs % kThreads == 0, "whole loads per thread");
  const int e = block_expert[blockIdx.x];
  if (e < 0) return;  // past the last expert's padded run
  // The output tile reuses the operands' shared memory after the K loop.
  constexpr int kOperandBytes = (BM + kBN) * kLds * static_cast<int>(sizeof(T));
  constexpr int kTileBytes = BM * kLdc * static_cast<int>(sizeof(float));
  __shared__ __align__(128) unsigned char smem[kOperandBytes > kTileBytes ? kOperandBytes : kTileBytes];
  __shared__ int32_t slot_of_row[BM];
  T* As = reinterpret_cast<T*>(smem);
  T* Bs = As + BM * kLds;
  float* Cs = reinterpret_cast<float*>(smem);
  const int tid = threadIdx.x, warp = tid / 32;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kBN;
  for (int r = tid; r < BM; r += kThreads) slot_of_row[r] = sorted[static_cast<int64_t>(blockIdx.x) * BM + r];
  __syncthreads();
  const T* W = w_table[e];

  uint4 ra[kA], rb[kB];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < kA; ++i) {
      const int v = tid + i * kThreads, r = v / kVecs, c = (v % kVecs) * 8;
      const int64_t s = slot_of_row[r];
      ra[i] = s < n_slots && k0 + c < K ? *reinterpret_cast<const uint4*>(x + (s / x_div) * K + k0 + c)
                                        : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < kB; ++i) {
      const int v = tid + i * kThreads, r = v / kVecs, c = (v % kVecs) * 8;
      rb[i] = n0 + r < N && k0 + c < K ? *reinterpret_cast<const uint4*>(W + (n0 + r) * K + k0 + c)
                                       : make_uint4(0, 0, 0, 0);
    }
  };
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[MT];
  for (int i = 0; i < MT; ++i) wmma::fill_fragment(acc[i], 0.f);
  load(0);
  for (int64_t k0 = 0; k0 < K; k0 += kBK) {
#pragma unroll
    for (int i = 0; i < kA; ++i) {
      const int v = tid + i * kThreads;
      *reinterpret_cast<uint4*>(&As[(v / kVecs) * kLds + (v % kVecs) * 8]) = ra[i];
    }
#pragma unroll
    for (int i = 0; i < kB; ++i) {
      const int v = tid + i * kThreads;
      *reinterpret_cast<uint4*>(&Bs[(v / kVecs) * kLds + (v % kVecs) * 8]) = rb[i];
    }
    __syncthreads();
    if (k0 + kBK < K) load(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      // B = W^T: element (k, n) at Bs[n * kLds + k], i.e. column-major.
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf;
      wmma::load_matrix_sync(bf, Bs + warp * 16 * kLds + kk, kLds);
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af;
        wmma::load_matrix_sync(af, As + i * 16 * kLds + kk, kLds);
        wmma::mma_sync(acc[i], af, bf, acc[i]);
      }
    }
    __syncthreads();
  }
  for (int i = 0; i < MT; ++i)
    wmma::store_matrix_sync(Cs + i * 16 * kLdc + warp * 16, acc[i], kLdc, wmma::mem_row_major);
  __syncthreads();
  for (int v = tid; v < BM * kBN; v += kThreads) {
    const int r = v / kBN, c = v % kBN;
    const int64_t s = slot_of_row[r];
    if (s < n_slots && n0 + c < N) store_from_float(y, y_type, s * N + n0 + c, Cs[r * kLdc + c]);
  }
}

template <typename T>
cudaError_t launch(int mt, const void* const* w_table, const void* x, int64_t x_div, int64_t K, int64_t N,
                   const int32_t* sorted, const int32_t* block_expert, int64_t token_blocks, int64_t n_slots, void* y,
                   DType y_type, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(token_blocks), static_cast<unsigned>((N + kBN - 1) / kBN));
  auto* w = reinterpret_cast<const T* const*>(w_table);
  auto* xt = static_cast<const T*>(x);
  switch (mt) {
    case 1: k_moe_dense_gemm<T, 1><<<grid, kThreads, 0, stream>>>(w, xt, x_div, K, N, sorted, block_expert, n_slots, y, y_type); break;
    case 2: k_moe_dense_gemm<T, 2><<<grid, kThreads, 0, stream>>>(w, xt, x_div, K, N, sorted, block_expert, n_slots, y, y_type); break;
    case 4: k_moe_dense_gemm<T, 4><<<grid, kThreads, 0, stream>>>(w, xt, x_div, K, N, sorted, block_expert, n_slots, y, y_type); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

int moe_dense_token_tiles(int64_t slots_per_expert) { return slots_per_expert <= 16 ? 1 : slots_per_expert <= 32 ? 2 : 4; }

cudaError_t moe_dense_gemm(int mt, const void* const* w_table, bool is_f16, const void* x, int64_t x_div, int64_t K,
                           int64_t N, const int32_t* sorted, const int32_t* block_expert, int64_t token_blocks,
                           int64_t n_slots, void* y, DType y_type, cudaStream_t stream) {
  if (token_blocks == 0 || N == 0) return cudaSuccess;
  if (K % 8 != 0 || token_blocks > INT32_MAX || (N + kBN - 1) / kBN > 65535) return cudaErrorInvalidValue;
  return is_f16 ? launch<__half>(mt, w_table, x, x_div, K, N, sorted, block_expert, token_blocks, n_slots, y, y_type,
                                 stream)
                : launch<__nv_bfloat16>(mt, w_table, x, x_div, K, N, sorted, block_expert, token_blocks, n_slots, y,
                                        y_type, stream);
}

}  // namespace xqcuda
