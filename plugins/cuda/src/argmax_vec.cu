// argmax_vec.cu: the 16-byte ARGMAX kernel (argmax_vec.hpp). One 1024-thread
// CTA per row, as the scalar kernel.
#include <cfloat>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "argmax_vec.hpp"
#include "common.cuh"
#include "pdl.cuh"

namespace xqcuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kInFlight = 4;  // float4 loads issued per thread before the compares

// (value, index): the larger value wins, the lower index on ties; NaN reads
// as -FLT_MAX (fused_ops.cu's rule).
__device__ __forceinline__ void better(float& v, int64_t& i, float v2, int64_t i2) {
  if (v2 != v2) v2 = -FLT_MAX;
  if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__global__ void argmax_vec_kernel(const float* x, int64_t N, int32_t* ids) {
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  pdl_wait();  // PDL (pdl.cuh): x comes from the previous kernel
  pdl_launch_dependents();
  const int64_t row = blockIdx.x;
  const float4* r = reinterpret_cast<const float4*>(x + row * N);
  const int64_t chunks = N / 4;
  float v = -FLT_MAX;
  int64_t idx = N;
  for (int64_t c0 = threadIdx.x; c0 < chunks; c0 += static_cast<int64_t>(kThreads) * kInFlight) {
    float4 q[kInFlight];
#pragma unroll
    for (int j = 0; j < kInFlight; ++j) {
      const int64_t c = c0 + static_cast<int64_t>(j) * kThreads;
      q[j] = c < chunks ? r[c] : make_float4(-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX);
    }
#pragma unroll
    for (int j = 0; j < kInFlight; ++j) {
      const int64_t c = c0 + static_cast<int64_t>(j) * kThreads;
      if (c >= chunks) break;
      better(v, idx, q[j].x, 4 * c);
      better(v, idx, q[j].y, 4 * c + 1);
      better(v, idx, q[j].z, 4 * c + 2);
      better(v, idx, q[j].w, 4 * c + 3);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, idx, o);
    if (v2 > v || (v2 == v && i2 < idx)) v = v2, idx = i2;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sv[warp] = v, si[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < kThreads / 32; ++k)
      if (sv[k] > v || (sv[k] == v && si[k] < idx)) v = sv[k], idx = si[k];
    ids[row] = static_cast<int32_t>(idx < N ? idx : 0);
  }
}

}  // namespace

bool argmax_vec_fits(const void* x, DType xt, int64_t N) {
  const char* e = std::getenv("XQUANT_VECTOR_ARGMAX");
  if (e && std::strcmp(e, "0") == 0) return false;
  return xt == DType::F32 && N > 0 && N % 4 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
}

cudaError_t argmax_vec(const float* x, int64_t M, int64_t N, int32_t* ids, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  return launch_pdl(argmax_vec_kernel, dim3(static_cast<unsigned>(M)), dim3(kThreads), 0, stream, x, N, ids);
}

}  // namespace xqcuda
