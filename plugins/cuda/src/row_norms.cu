// row_norms.cu: the 16-byte RMS_NORM / ADD_RMS_NORM kernels (row_norms.hpp).
// One CTA per row; thread j owns the row's float4 chunks j, j + blockDim,
// ... (at most kMaxChunks), kept in registers from the load to the store.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "pdl.cuh"
#include "row_norms.hpp"

namespace xqcuda {

namespace {

constexpr int kMaxChunks = 4;

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void store4(__nv_bfloat16* p, float4 v) {
  const __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&a);
  u.y = *reinterpret_cast<const uint32_t*>(&b);
  *reinterpret_cast<uint2*>(p) = u;
}

template <typename RT, typename YT>
__global__ void row_norm_vec_kernel(float* x, const RT* r, const float* w, int64_t D, float eps, YT* y) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  const int64_t chunks = D / 4;
  // The norm weights are constants: loaded before the wait, so the second
  // pass does not wait on them after the reduction (at batch 1 a step's
  // norms are one CTA each, a chain of round trips; Nsight Compute on an
  // H200 put the call at 3.5-4.0 us, docs/results.md "Session twenty-nine").
  float4 g[kMaxChunks];
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (c < chunks) g[j] = load4(w + 4 * c);
  }
  // PDL (pdl.cuh): x and r come from earlier kernels. Only then may the
  // next kernel (the q|k|v or gate|up GEMV at decode) launch and start on its
  // weights: triggering before the wait would let it launch while the GEMV
  // before this norm still streams its own weights (measured slower).
  pdl_wait();
  pdl_launch_dependents();
  float* xr = x + row * D;
  // Every load before the first store: the residual's store to x could
  // alias the next chunk's loads, which the compiler would then not issue
  // ahead of it.
  float4 v[kMaxChunks], add[kMaxChunks];
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (c < chunks) {
      v[j] = load4(xr + 4 * c);
      if (r) add[j] = load4(r + row * D + 4 * c);
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (c < chunks) {
      float4 a = v[j];
      if (r) {
        const float4 b = add[j];
        a = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
        store4(xr + 4 * c, a);
      }
      v[j] = a;
      ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
  }
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  if (lane == 0) red[warp] = ss;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < warps; ++i) total += red[i];
  const float inv = 1.0f / sqrtf(total / static_cast<float>(D) + eps);
#pragma unroll
  for (int j = 0; j < kMaxChunks; ++j) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
    if (c < chunks) {
      const float4 a = v[j], b = g[j];
      store4(y + row * D + 4 * c, make_float4(a.x * inv * b.x, a.y * inv * b.y, a.z * inv * b.z, a.w * inv * b.w));
    }
  }
}

int threads_for(int64_t D) {
  const int64_t chunks = D / 4;
  int64_t t = ((chunks + 1) / 2 + 31) / 32 * 32;  // two chunks a thread: enough loads in flight, few idle lanes
  if (t < 32) t = 32;
  if (t > 1024) t = 1024;
  return static_cast<int>(t);
}

bool aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }
bool row_type(DType t) { return t == DType::F32 || t == DType::BF16; }
bool row_aligned(const void* p, DType t, int64_t D) {
  // Each row starts D elements after the last: 16 (F32) or 8 (BF16) bytes
  // apart stays aligned because D is a multiple of 4.
  (void)D;
  return aligned(p, t == DType::F32 ? 16 : 8);
}

template <typename RT, typename YT>
cudaError_t launch(float* x, const void* r, const float* w, int64_t M, int64_t D, float eps, void* y,
                   cudaStream_t stream) {
  return launch_pdl(row_norm_vec_kernel<RT, YT>, dim3(static_cast<unsigned>(M)), dim3(threads_for(D)), 0, stream, x,
                    static_cast<const RT*>(r), w, D, eps, static_cast<YT*>(y));
}

}  // namespace

bool row_norm_vec_fits(const void* x, DType xt, const void* r, DType rt, const void* w, DType wt, int64_t D,
                       const void* y, DType yt) {
  const char* e = std::getenv("XQUANT_VECTOR_NORMS");
  if (e && std::strcmp(e, "0") == 0) return false;
  if (xt != DType::F32 || wt != DType::F32 || !row_type(yt) || (r && !row_type(rt))) return false;
  if (D <= 0 || D % 4 != 0 || (D / 4 + threads_for(D) - 1) / threads_for(D) > kMaxChunks) return false;
  return aligned(x, 16) && aligned(w, 16) && row_aligned(y, yt, D) && (!r || row_aligned(r, rt, D));
}

cudaError_t row_norm_vec(float* x, const void* r, DType rt, const float* w, int64_t M, int64_t D, float eps, void* y,
                         DType yt, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  const bool rb = r && rt == DType::BF16, yb = yt == DType::BF16;
  if (rb && yb) return launch<__nv_bfloat16, __nv_bfloat16>(x, r, w, M, D, eps, y, stream);
  if (rb) return launch<__nv_bfloat16, float>(x, r, w, M, D, eps, y, stream);
  if (yb) return launch<float, __nv_bfloat16>(x, r, w, M, D, eps, y, stream);
  return launch<float, float>(x, r, w, M, D, eps, y, stream);
}

}  // namespace xqcuda
