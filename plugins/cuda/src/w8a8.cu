// w8a8.cu: the elementwise halves of the W8A8 paths: activation quantization
// (dynamic per-token and static, to INT8 or FP8 E4M3), the fused scaling
// epilogue applied to the INT32 (or F32) GEMM accumulator (per-token x
// per-channel scales, bias, cast), dense INT8/FP8 weight dequantization, and
// dtype conversion. The GEMMs themselves run in cuBLASLt (cublaslt.cpp) or
// CUTLASS (cutlass_w8a8.hpp).
#include <cstdlib>
#include <cstring>

#include "act_quant.cuh"
#include "common.cuh"
#include "pdl.cuh"
#include "vector_elementwise.hpp"

namespace xqcuda {
namespace {

constexpr int kThreads = 256;
constexpr int kEpiCols = 2048;  // columns per epilogue block (grid = M x N/2048)

__device__ float block_max(float v) {
  __shared__ float warp_max[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) r = fmaxf(r, warp_max[w]);
  __syncthreads();
  return r;
}

__global__ void __launch_bounds__(kThreads) k_quantize_act(const void* __restrict__ x, DType in_type, int64_t K,
                                                           void* __restrict__ q, DType out_type,
                                                           float* __restrict__ scales, float static_scale) {
  const int64_t m = blockIdx.x;
  const int64_t base = m * K;
  const bool fp8 = out_type == DType::F8E4M3;
  float scale = static_scale;
  if (static_scale <= 0.f) {
    float amax = 0.f;
    for (int64_t k = threadIdx.x; k < K; k += kThreads) amax = fmaxf(amax, fabsf(load_as_float(x, in_type, base + k)));
    scale = act_scale(block_max(amax), fp8);
    if (threadIdx.x == 0 && scales) scales[m] = scale;
  }
  const float inv = 1.0f / scale;
  for (int64_t k = threadIdx.x; k < K; k += kThreads)
    static_cast<uint8_t*>(q)[base + k] = act_code(load_as_float(x, in_type, base + k) * inv, fp8);
}


// Vector path for 16-bit input with K % 8 == 0 (16-byte loads, 8-byte stores).
template <typename T>
__global__ void __launch_bounds__(kThreads) k_quantize_act16(const T* __restrict__ x, int64_t K, void* __restrict__ q,
                                                             bool fp8, float* __restrict__ scales,
                                                             float static_scale) {
  const int64_t m = blockIdx.x;
  const uint4* xr = reinterpret_cast<const uint4*>(x + m * K);
  const int64_t n8 = K / 8;
  float scale = static_scale;
  if (static_scale <= 0.f) {
    float amax = 0.f;
    for (int64_t i = threadIdx.x; i < n8; i += kThreads) amax = act_amax8<T>(xr[i], amax);
    scale = act_scale(block_max(amax), fp8);
    if (threadIdx.x == 0 && scales) scales[m] = scale;
  }
  const float inv = 1.0f / scale;
  uint2* qr = reinterpret_cast<uint2*>(static_cast<uint8_t*>(q) + m * K);
  for (int64_t i = threadIdx.x; i < n8; i += kThreads) qr[i] = act_codes8<T>(xr[i], inv, fp8);
}

// One read of the row: each thread loads its NV 16-byte chunks of the row
// into registers (all loads issued before the first use), takes the absmax
// from them and quantizes the same registers; the two-pass kernel above
// reads the row from memory twice. K / 8 <= kThreads * NV. The arithmetic is
// the two-pass kernel's (same max, same scale and 1/scale, same rounding),
// so codes and scales are bit-identical.
template <typename T, int NV>
__global__ void __launch_bounds__(kThreads) k_quantize_act16_regs(const T* __restrict__ x, int64_t K,
                                                                  void* __restrict__ q, bool fp8,
                                                                  float* __restrict__ scales, float static_scale) {
  // PDL (pdl.cuh): launched early, this kernel waits for its producer before
  // touching memory and lets its consumer (the few-row W8A8 kernel, which
  // prefetches weights first) launch at once.
  pdl_launch_dependents();
  pdl_wait();
  const int64_t m = blockIdx.x;
  const uint4* xr = reinterpret_cast<const uint4*>(x + m * K);
  const int n8 = static_cast<int>(K / 8);
  uint4 v[NV];
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int i = threadIdx.x + j * kThreads;
    v[j] = i < n8 ? xr[i] : make_uint4(0u, 0u, 0u, 0u);
  }
  float scale = static_scale;
  if (static_scale <= 0.f) {
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < NV; ++j) amax = act_amax8<T>(v[j], amax);
    scale = act_scale(block_max(amax), fp8);
    if (threadIdx.x == 0 && scales) scales[m] = scale;
  }
  const float inv = 1.0f / scale;
  uint2* qr = reinterpret_cast<uint2*>(static_cast<uint8_t*>(q) + m * K);
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    const int i = threadIdx.x + j * kThreads;
    if (i >= n8) break;
    qr[i] = act_codes8<T>(v[j], inv, fp8);
  }
}

// The one-read kernel for rows of up to kThreads * 8 chunks of 8 (K <= 16384),
// its launch's status in *err; false for longer rows (the two-pass kernel
// takes them).
template <typename T>
bool launch_quantize_act16_regs(const T* x, int64_t M, int64_t K, void* q, bool fp8, float* scales,
                                float static_scale, cudaStream_t stream, cudaError_t* err) {
  const int64_t chunks = (K / 8 + kThreads - 1) / kThreads;  // 16-byte chunks per thread
  const unsigned grid = static_cast<unsigned>(M);
  cudaError_t& e = *err;
  if (chunks <= 1) e = launch_pdl(k_quantize_act16_regs<T, 1>, dim3(grid), dim3(kThreads), 0, stream, x, K, q, fp8, scales, static_scale);
  else if (chunks <= 2) e = launch_pdl(k_quantize_act16_regs<T, 2>, dim3(grid), dim3(kThreads), 0, stream, x, K, q, fp8, scales, static_scale);
  else if (chunks <= 4) e = launch_pdl(k_quantize_act16_regs<T, 4>, dim3(grid), dim3(kThreads), 0, stream, x, K, q, fp8, scales, static_scale);
  else if (chunks <= 8) e = launch_pdl(k_quantize_act16_regs<T, 8>, dim3(grid), dim3(kThreads), 0, stream, x, K, q, fp8, scales, static_scale);
  else return false;
  return true;
}

// XQUANT_CUDA_ACT_QUANT_ONE_READ=0 (read per call) keeps the two-pass kernel,
// for A/B measurements in one process.
bool one_read_enabled() {
  const char* e = std::getenv("XQUANT_CUDA_ACT_QUANT_ONE_READ");
  return !(e && std::strcmp(e, "0") == 0);
}

__global__ void __launch_bounds__(kThreads) k_scale_epilogue(const void* acc, DType acc_type, int64_t N,
                                                             const float* __restrict__ sa, float sa_const,
                                                             const float* __restrict__ sw, float sw_const,
                                                             const void* __restrict__ bias, DType bias_type,
                                                             void* y, DType y_type) {
  const int64_t m = blockIdx.x;
  const float a = sa ? sa[m] : sa_const;
  const int64_t base = m * N;
  if (acc_type == DType::I32 && y_type == DType::BF16 && (N % 4 == 0) && sw) {
    // Vector path: 16-byte accumulator loads, 8-byte bf16 stores.
    const int4* acc4 = reinterpret_cast<const int4*>(static_cast<const int32_t*>(acc) + base);
    uint2* y4 = reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(y) + base);
    const int64_t j_end = min(N / 4, static_cast<int64_t>(blockIdx.y + 1) * (kEpiCols / 4));
    for (int64_t j = static_cast<int64_t>(blockIdx.y) * (kEpiCols / 4) + threadIdx.x; j < j_end; j += kThreads) {
      const int4 v = acc4[j];
      const int64_t n = j * 4;
      float r[4] = {static_cast<float>(v.x) * a * sw[n], static_cast<float>(v.y) * a * sw[n + 1],
                    static_cast<float>(v.z) * a * sw[n + 2], static_cast<float>(v.w) * a * sw[n + 3]};
      if (bias) {
#pragma unroll
        for (int e = 0; e < 4; ++e) r[e] += load_as_float(bias, bias_type, n + e);
      }
      __nv_bfloat162 lo = __floats2bfloat162_rn(r[0], r[1]), hi = __floats2bfloat162_rn(r[2], r[3]);
      uint2 out;
      out.x = *reinterpret_cast<uint32_t*>(&lo);
      out.y = *reinterpret_cast<uint32_t*>(&hi);
      y4[j] = out;
    }
    return;
  }
  if ((acc_type == DType::BF16 || acc_type == DType::F16) && y_type == acc_type && (N % 8 == 0) &&
      (reinterpret_cast<uintptr_t>(acc) % 16 == 0) && (reinterpret_cast<uintptr_t>(y) % 16 == 0)) {
    // 16-bit accumulator (FP8 GEMM output), possibly in place: 16-byte
    // loads and stores, 8 columns per thread.
    const bool bf = acc_type == DType::BF16;
    const uint4* in8 = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(acc) + base);
    uint4* out8 = reinterpret_cast<uint4*>(static_cast<uint16_t*>(y) + base);
    const int64_t j_end = min(N / 8, static_cast<int64_t>(blockIdx.y + 1) * (kEpiCols / 8));
    for (int64_t j = static_cast<int64_t>(blockIdx.y) * (kEpiCols / 8) + threadIdx.x; j < j_end; j += kThreads) {
      uint4 v = in8[j];
      uint16_t* h = reinterpret_cast<uint16_t*>(&v);
      const int64_t n = j * 8;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float f = bf ? __bfloat162float(__ushort_as_bfloat16(h[e])) : __half2float(__ushort_as_half(h[e]));
        float r = f * a * (sw ? sw[n + e] : sw_const);
        if (bias) r += load_as_float(bias, bias_type, n + e);
        h[e] = bf ? __bfloat16_as_ushort(__float2bfloat16_rn(r)) : __half_as_ushort(__float2half_rn(r));
      }
      out8[j] = v;
    }
    return;
  }
  const int64_t n_end = min(N, static_cast<int64_t>(blockIdx.y + 1) * kEpiCols);
  for (int64_t n = static_cast<int64_t>(blockIdx.y) * kEpiCols + threadIdx.x; n < n_end; n += kThreads) {
    float r = load_as_float(acc, acc_type, base + n) * a * (sw ? sw[n] : sw_const);
    if (bias) r += load_as_float(bias, bias_type, n);
    store_from_float(y, y_type, base + n, r);
  }
}

__global__ void __launch_bounds__(kThreads) k_dequant_rows(const void* __restrict__ w, DType w_type, int64_t K,
                                                           const float* __restrict__ sw, float sw_const,
                                                           void* __restrict__ out, DType out_type) {
  const int64_t n = blockIdx.x;
  const float s = sw ? sw[n] : sw_const;
  for (int64_t k = threadIdx.x; k < K; k += kThreads)
    store_from_float(out, out_type, n * K + k, load_as_float(w, w_type, n * K + k) * s);
}

__global__ void k_convert(const void* __restrict__ src, DType st, void* __restrict__ dst, DType dt, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_from_float(dst, dt, i, load_as_float(src, st, i));
}

}  // namespace

cudaError_t quantize_act(const void* x, DType in_type, int64_t M, int64_t K, void* q, DType out_type, float* scales,
                         float static_scale, cudaStream_t stream) {
  if (M <= 0 || M > 2147483647LL) return cudaErrorInvalidValue;
  const bool aligned = (reinterpret_cast<uintptr_t>(x) % 16 == 0) && (reinterpret_cast<uintptr_t>(q) % 8 == 0);
  if (K % 8 == 0 && aligned && (in_type == DType::BF16 || in_type == DType::F16)) {
    const bool fp8 = out_type == DType::F8E4M3;
    if (one_read_enabled()) {
      cudaError_t err = cudaSuccess;
      const bool done = in_type == DType::BF16
                            ? launch_quantize_act16_regs(static_cast<const __nv_bfloat16*>(x), M, K, q, fp8, scales,
                                                         static_scale, stream, &err)
                            : launch_quantize_act16_regs(static_cast<const __half*>(x), M, K, q, fp8, scales,
                                                         static_scale, stream, &err);
      if (done) return err;
    }
    if (in_type == DType::BF16)
      k_quantize_act16<__nv_bfloat16><<<static_cast<unsigned>(M), kThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(x), K, q, fp8, scales, static_scale);
    else
      k_quantize_act16<__half><<<static_cast<unsigned>(M), kThreads, 0, stream>>>(static_cast<const __half*>(x), K, q,
                                                                                   fp8, scales, static_scale);
    return cudaGetLastError();
  }
  k_quantize_act<<<static_cast<unsigned>(M), kThreads, 0, stream>>>(x, in_type, K, q, out_type, scales, static_scale);
  return cudaGetLastError();
}

cudaError_t scale_epilogue(const void* acc, DType acc_type, int64_t M, int64_t N, const float* sa, float sa_const,
                           const float* sw, float sw_const, const void* bias, DType bias_type, void* y, DType y_type,
                           cudaStream_t stream) {
  if (M <= 0 || M > 2147483647LL) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(M), static_cast<unsigned>((N + kEpiCols - 1) / kEpiCols));
  k_scale_epilogue<<<grid, kThreads, 0, stream>>>(acc, acc_type, N, sa, sa_const, sw, sw_const,
                                                                      bias, bias_type, y, y_type);
  return cudaGetLastError();
}

cudaError_t dequant_rows(const void* w, DType w_type, int64_t N, int64_t K, const float* sw, float sw_const, void* out,
                         DType out_type, cudaStream_t stream) {
  if (N <= 0 || N > 2147483647LL) return cudaErrorInvalidValue;
  k_dequant_rows<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(w, w_type, K, sw, sw_const, out, out_type);
  return cudaGetLastError();
}

cudaError_t convert(const void* src, DType st, void* dst, DType dt, int64_t n, cudaStream_t stream) {
  if (vector_rows_apply(src, st, n, nullptr, st, 0, n, dst, dt)) return convert_rows_vec(src, st, n, 1, n, dst, dt, stream);
  k_convert<<<blocks_for(n, 256), 256, 0, stream>>>(src, st, dst, dt, n);
  return cudaGetLastError();
}

}  // namespace xqcuda
