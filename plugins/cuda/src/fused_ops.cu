// fused_ops.cu: kernels that let a decode step run fewer, larger ops
// (fused_ops.hpp): row-strided CONVERT and SWIGLU (the column slices of one
// fused q|k|v or gate|up GEMM output), the residual add fused into RMSNorm,
// and a per-row argmax so greedy sampling returns token ids, not logits.
#include <cfloat>

#include "common.cuh"
#include "fused_ops.hpp"
#include "vector_elementwise.hpp"

namespace xqcuda {

namespace {

constexpr int kThreads = 256;

// The same reduction as decoder_ops.cu's rms_norm_kernel, so the fused and
// unfused norms sum in the same order.
__device__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.f;
  for (int i = 0; i < warps; ++i) s += red[i];
  return s;
}

__global__ void convert_rows_kernel(const void* src, DType st, int64_t cols, int64_t ld, int64_t n, void* dst,
                                    DType dt) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    store_from_float(dst, dt, e, load_as_float(src, st, r * ld + c));
  }
}

__global__ void swiglu_rows_kernel(const void* a, DType at, int64_t lda, const void* b, DType bt, int64_t ldb,
                                   int64_t cols, int64_t n, void* y, DType yt) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, c = e % cols;
    const float x = load_as_float(a, at, r * lda + c), w = load_as_float(b, bt, r * ldb + c);
    store_from_float(y, yt, e, x / (1.0f + expf(-x)) * w);
  }
}

__global__ void add_rms_norm_kernel(void* x, DType xt, const void* r, DType rt, const void* w, DType wt, int64_t D,
                                    float eps, void* y, DType yt) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const int64_t at = row * D + i;
    store_from_float(x, xt, at, load_as_float(x, xt, at) + load_as_float(r, rt, at));
    const float v = load_as_float(x, xt, at);  // as stored: what an unfused RMS_NORM would read
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    store_from_float(y, yt, row * D + i, load_as_float(x, xt, row * D + i) * inv * load_as_float(w, wt, i));
}

// (value, index) with the larger value winning and the lower index on ties;
// NaN reads as -inf so it never wins.
__device__ void better(float& v, int64_t& i, float v2, int64_t i2) {
  if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__global__ void argmax_rows_kernel(const void* x, DType xt, int64_t N, int32_t* ids) {
  __shared__ float sv[32];
  __shared__ int64_t si[32];
  const int64_t row = blockIdx.x;
  float v = -FLT_MAX;
  int64_t idx = N;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    float e = load_as_float(x, xt, row * N + n);
    if (e != e) e = -FLT_MAX;
    better(v, idx, e, n);
  }
  for (int o = 16; o > 0; o >>= 1) better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) sv[warp] = v, si[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 1; k < warps; ++k) better(v, idx, sv[k], si[k]);
    ids[row] = static_cast<int32_t>(idx < N ? idx : 0);
  }
}

}  // namespace

cudaError_t convert_rows(const void* src, DType st, int64_t rows, int64_t cols, int64_t ld, void* dst, DType dt,
                         cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return cudaSuccess;
  if (vector_rows_apply(src, st, ld, nullptr, st, 0, cols, dst, dt))
    return convert_rows_vec(src, st, ld, rows, cols, dst, dt, stream);
  convert_rows_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(src, st, cols, ld, n, dst, dt);
  return cudaGetLastError();
}

cudaError_t swiglu_rows(const void* a, DType at, int64_t lda, const void* b, DType bt, int64_t ldb, int64_t rows,
                        int64_t cols, void* y, DType yt, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n <= 0) return cudaSuccess;
  if (at == bt && vector_rows_apply(a, at, lda, b, bt, ldb, cols, y, yt))
    return swiglu_rows_vec(a, at, lda, b, ldb, rows, cols, y, yt, stream);
  swiglu_rows_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(a, at, lda, b, bt, ldb, cols, n, y, yt);
  return cudaGetLastError();
}

cudaError_t add_rms_norm(void* x, DType xt, const void* r, DType rt, const void* w, DType wt, int64_t M, int64_t D,
                         float eps, void* y, DType yt, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  add_rms_norm_kernel<<<static_cast<unsigned>(M), D >= 1024 ? 512 : 128, 0, stream>>>(x, xt, r, rt, w, wt, D, eps, y,
                                                                                       yt);
  return cudaGetLastError();
}

cudaError_t argmax_rows(const void* x, DType xt, int64_t M, int64_t N, int32_t* ids, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  argmax_rows_kernel<<<static_cast<unsigned>(M), 1024, 0, stream>>>(x, xt, N, ids);
  return cudaGetLastError();
}

}  // namespace xqcuda
