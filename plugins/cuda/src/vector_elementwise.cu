// vector_elementwise.cu: SWIGLU and CONVERT over rows, 8 elements per
// thread through 16-byte memory operations (vector_elementwise.hpp). The
// scalar kernels these replace in prefill read one 2- or 4-byte element per
// thread and divide a 64-bit index per element; here the row/column split
// is computed once per 8 elements and every access is a full 16-byte word.
#include <cstdlib>
#include <type_traits>

#include "common.cuh"
#include "pdl.cuh"
#include "vector_elementwise.hpp"

namespace xqcuda {

namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // elements per thread

template <class T>
struct Vec8;  // 8 elements <-> float[8]

template <>
struct Vec8<float> {
  static __device__ __forceinline__ void load(const float* p, float (&v)[kVec]) {
    const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
  static __device__ __forceinline__ void store(float* p, const float (&v)[kVec]) {
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
};

template <class T, class T2, float2 (*ToF)(T2), T2 (*FromF)(float2)>
struct Vec8Half {
  static __device__ __forceinline__ void load(const T* p, float (&v)[kVec]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const T2* h = reinterpret_cast<const T2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = ToF(h[i]);
      v[2 * i] = f.x, v[2 * i + 1] = f.y;
    }
  }
  static __device__ __forceinline__ void store(T* p, const float (&v)[kVec]) {
    uint4 u;
    T2* h = reinterpret_cast<T2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = FromF(make_float2(v[2 * i], v[2 * i + 1]));
    *reinterpret_cast<uint4*>(p) = u;
  }
};

__device__ __forceinline__ float2 bf2_to_f(__nv_bfloat162 x) { return __bfloat1622float2(x); }
__device__ __forceinline__ __nv_bfloat162 f_to_bf2(float2 x) { return __float22bfloat162_rn(x); }
__device__ __forceinline__ float2 h2_to_f(__half2 x) { return __half22float2(x); }
__device__ __forceinline__ __half2 f_to_h2(float2 x) { return __float22half2_rn(x); }

template <>
struct Vec8<__nv_bfloat16> : Vec8Half<__nv_bfloat16, __nv_bfloat162, bf2_to_f, f_to_bf2> {};
template <>
struct Vec8<__half> : Vec8Half<__half, __half2, h2_to_f, f_to_h2> {};

// Chunk e of the output (8 elements) sits at row e / chunks, column
// 8 * (e % chunks).
template <class In, class Out>
__global__ void swiglu_rows_vec_kernel(const In* __restrict__ a, int64_t lda, const In* __restrict__ b, int64_t ldb,
                                       int64_t cols, int64_t n_chunks, Out* __restrict__ y) {
  pdl_wait();  // PDL (pdl.cuh): a and b come from the previous kernel
  pdl_launch_dependents();
  const int64_t chunks = cols / kVec;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n_chunks;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / chunks, c = (e - r * chunks) * kVec;
    float x[kVec], w[kVec];
    Vec8<In>::load(a + r * lda + c, x);
    Vec8<In>::load(b + r * ldb + c, w);
#pragma unroll
    for (int i = 0; i < kVec; ++i) x[i] = x[i] / (1.0f + expf(-x[i])) * w[i];
    Vec8<Out>::store(y + e * kVec, x);
  }
}

template <class In, class Out>
__global__ void convert_rows_vec_kernel(const In* __restrict__ src, int64_t ld, int64_t cols, int64_t n_chunks,
                                        Out* __restrict__ y) {
  pdl_wait();  // PDL (pdl.cuh): src comes from the previous kernel
  pdl_launch_dependents();
  const int64_t chunks = cols / kVec;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n_chunks;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / chunks, c = (e - r * chunks) * kVec;
    float x[kVec];
    Vec8<In>::load(src + r * ld + c, x);
    Vec8<Out>::store(y + e * kVec, x);
  }
}

// XQUANT_CUDA_VECTOR_ELEMENTWISE=0 keeps every op on the scalar kernels
// (to measure against them).
bool switched_off() {
  static const bool off = [] {
    const char* v = std::getenv("XQUANT_CUDA_VECTOR_ELEMENTWISE");
    return v && v[0] == '0';
  }();
  return off;
}

bool vector_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Calls f(In*, Out*) with the buffers cast to their element types.
template <class F>
cudaError_t with_types(DType it, DType ot, F&& f) {
  auto out = [&](auto* in_tag) -> cudaError_t {
    using In = std::remove_pointer_t<decltype(in_tag)>;
    switch (ot) {
      case DType::F32: return f(static_cast<In*>(nullptr), static_cast<float*>(nullptr));
      case DType::F16: return f(static_cast<In*>(nullptr), static_cast<__half*>(nullptr));
      case DType::BF16: return f(static_cast<In*>(nullptr), static_cast<__nv_bfloat16*>(nullptr));
      default: return cudaErrorInvalidValue;
    }
  };
  switch (it) {
    case DType::F32: return out(static_cast<float*>(nullptr));
    case DType::F16: return out(static_cast<__half*>(nullptr));
    case DType::BF16: return out(static_cast<__nv_bfloat16*>(nullptr));
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

bool vector_rows_apply(const void* a, DType at, int64_t lda, const void* b, DType bt, int64_t ldb, int64_t cols,
                       const void* y, DType yt) {
  if (switched_off()) return false;
  if (!vector_type(at) || !vector_type(yt) || cols <= 0 || cols % kVec != 0 || lda % kVec != 0) return false;
  if (!aligned16(a) || !aligned16(y)) return false;
  return !b || (vector_type(bt) && ldb % kVec == 0 && aligned16(b));
}

cudaError_t swiglu_rows_vec(const void* a, DType at, int64_t lda, const void* b, int64_t ldb, int64_t rows,
                            int64_t cols, void* y, DType yt, cudaStream_t stream) {
  const int64_t n_chunks = rows * cols / kVec;
  if (n_chunks <= 0) return cudaSuccess;
  return with_types(at, yt, [&](auto* in, auto* out) {
    using In = std::remove_pointer_t<decltype(in)>;
    using Out = std::remove_pointer_t<decltype(out)>;
    return launch_pdl(swiglu_rows_vec_kernel<In, Out>, dim3(blocks_for(n_chunks, kThreads)), dim3(kThreads), 0, stream,
                      static_cast<const In*>(a), lda, static_cast<const In*>(b), ldb, cols, n_chunks,
                      static_cast<Out*>(y));
  });
}

cudaError_t convert_rows_vec(const void* src, DType st, int64_t ld, int64_t rows, int64_t cols, void* y, DType yt,
                             cudaStream_t stream) {
  const int64_t n_chunks = rows * cols / kVec;
  if (n_chunks <= 0) return cudaSuccess;
  return with_types(st, yt, [&](auto* in, auto* out) {
    using In = std::remove_pointer_t<decltype(in)>;
    using Out = std::remove_pointer_t<decltype(out)>;
    return launch_pdl(convert_rows_vec_kernel<In, Out>, dim3(blocks_for(n_chunks, kThreads)), dim3(kThreads), 0, stream,
                      static_cast<const In*>(src), ld, cols, n_chunks, static_cast<Out*>(y));
  });
}

}  // namespace xqcuda
