// argmax_vec.cu: the 16-byte ARGMAX kernel (argmax_vec.hpp). A row over
// several 256-thread CTAs, the last of them merging their winners.
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "argmax_vec.hpp"
#include "common.cuh"
#include "pdl.cuh"

namespace xqcuda {

namespace {

constexpr int kThreads = 256;
constexpr int kInFlight = 4;  // float4 loads issued per thread before the compares
constexpr int64_t kChunksPerCta = static_cast<int64_t>(kThreads) * kInFlight;  // float4s per CTA and round
// A row is split over up to kMaxCtas CTAs (one 4096-logit round each for a
// 128,256-entry vocabulary: 32 CTAs), the last to finish picking the winner
// of their partial winners. One CTA per row read 513 KB through one SM: 12 us
// a decode step on an H200 (Nsight Compute; docs/results.md "Session
// twenty-nine"). Batches of more than kMaxSplitRows rows keep one CTA a row
// (enough CTAs already; the partials live in fixed device arrays).
constexpr int kMaxCtas = 64;
constexpr int kMaxSplitRows = 256;
__device__ float g_part_v[kMaxSplitRows * kMaxCtas];
__device__ int64_t g_part_i[kMaxSplitRows * kMaxCtas];
__device__ unsigned int g_tickets[kMaxSplitRows];  // back to 0 after each row's last CTA

// (value, index): the larger value wins, the lower index on ties; NaN reads
// as -FLT_MAX (fused_ops.cu's rule). A total order, so any split and merge
// order gives the same winner.
__device__ __forceinline__ void better(float& v, int64_t& i, float v2, int64_t i2) {
  if (v2 != v2) v2 = -FLT_MAX;
  if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

// The CTA's winner, in thread 0.
__device__ void cta_best(float& v, int64_t& idx) {
  __shared__ float sv[kThreads / 32];
  __shared__ int64_t si[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (v2 > v || (v2 == v && i2 < idx)) v = v2, idx = i2;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sv[warp] = v, si[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0)
    for (int k = 1; k < kThreads / 32; ++k)
      if (sv[k] > v || (sv[k] == v && si[k] < idx)) v = sv[k], idx = si[k];
}

__global__ void argmax_vec_kernel(const float* x, int64_t N, int32_t* ids) {
  pdl_wait();  // PDL (pdl.cuh): x comes from the previous kernel
  pdl_launch_dependents();
  const int64_t row = blockIdx.x;  // rows on x (up to 2^31 - 1), a row's CTAs on y
  const unsigned split = blockIdx.y, splits = gridDim.y;
  const float4* r = reinterpret_cast<const float4*>(x + row * N);
  const int64_t chunks = N / 4;
  float v = -FLT_MAX;
  int64_t idx = N;
  for (int64_t base = split * kChunksPerCta; base < chunks; base += splits * kChunksPerCta) {
    float4 q[kInFlight];
#pragma unroll
    for (int j = 0; j < kInFlight; ++j) {
      const int64_t c = base + static_cast<int64_t>(j) * kThreads + threadIdx.x;
      q[j] = c < chunks ? r[c] : make_float4(-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX);
    }
#pragma unroll
    for (int j = 0; j < kInFlight; ++j) {
      const int64_t c = base + static_cast<int64_t>(j) * kThreads + threadIdx.x;
      if (c >= chunks) break;
      better(v, idx, q[j].x, 4 * c);
      better(v, idx, q[j].y, 4 * c + 1);
      better(v, idx, q[j].z, 4 * c + 2);
      better(v, idx, q[j].w, 4 * c + 3);
    }
  }
  cta_best(v, idx);
  if (threadIdx.x != 0) return;
  if (splits == 1) {
    ids[row] = static_cast<int32_t>(idx < N ? idx : 0);
    return;
  }
  // Split row: publish this CTA's winner; the row's last CTA merges them.
  const int64_t at = row * kMaxCtas + split;
  g_part_v[at] = v;
  g_part_i[at] = idx;
  __threadfence();
  if (atomicAdd(&g_tickets[row], 1u) != splits - 1) return;
  g_tickets[row] = 0;
  __threadfence();
  for (unsigned b = 0; b < splits; ++b) {
    const int64_t from = row * kMaxCtas + b;
    const auto i = static_cast<int64_t>(__ldcg(reinterpret_cast<const long long*>(&g_part_i[from])));
    better(v, idx, __ldcg(&g_part_v[from]), i);
  }
  ids[row] = static_cast<int32_t>(idx < N ? idx : 0);
}

}  // namespace

bool argmax_vec_fits(const void* x, DType xt, int64_t N) {
  const char* e = std::getenv("XQUANT_VECTOR_ARGMAX");
  if (e && std::strcmp(e, "0") == 0) return false;
  return xt == DType::F32 && N > 0 && N % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
}

cudaError_t argmax_vec(const float* x, int64_t M, int64_t N, int32_t* ids, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  const int64_t rounds = (N / 4 + kChunksPerCta - 1) / kChunksPerCta;
  const int64_t ctas = M > kMaxSplitRows ? 1 : std::min<int64_t>(std::max<int64_t>(rounds, 1), kMaxCtas);
  return launch_pdl(argmax_vec_kernel, dim3(static_cast<unsigned>(M), static_cast<unsigned>(ctas)), dim3(kThreads), 0,
                    stream, x, N, ids);
}

}  // namespace xqcuda
