// decoder_ops.cu: simple, correct CUDA kernels of the decoder's dense ops
// (decoder_ops.hpp). Phase-one kernels: one thread per element or one block
// per row/(query, head); paged KV and a flash-style attention come later.
#include <cfloat>

#include "common.cuh"
#include "decoder_ops.hpp"

namespace xqcuda {

namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // `red` may still be read by an earlier reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.f;
  for (int i = 0; i < warps; ++i) s += red[i];
  return s;
}

__device__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float m = -FLT_MAX;
  for (int i = 0; i < warps; ++i) m = fmaxf(m, red[i]);
  return m;
}

// One CTA per (row, kGetRowsThreads elements of it), one element a thread.
// A CTA per row that looped over the row issued each load only after the
// previous store (the two may alias): at batch 1, the embedding gather of a
// decode step, 4096 elements were 32 round trips, 16.5 us on an H200
// (Nsight Compute; docs/results.md "Session twenty-nine").
constexpr int kGetRowsThreads = 256;
__global__ void get_rows_kernel(const void* table, DType tt, int64_t V, int64_t D, const int32_t* ids, void* y,
                                DType yt) {
  const int64_t t = blockIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kGetRowsThreads + threadIdx.x;
  if (i >= D) return;
  const int32_t id = ids[t];
  const bool ok = id >= 0 && id < V;
  store_from_float(y, yt, t * D + i, ok ? load_as_float(table, tt, static_cast<int64_t>(id) * D + i) : NAN);
}

__global__ void rms_norm_kernel(const void* x, DType xt, const void* w, DType wt, int64_t D, float eps, void* y,
                                DType yt) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = load_as_float(x, xt, row * D + i);
    ss += v * v;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    store_from_float(y, yt, row * D + i, load_as_float(x, xt, row * D + i) * inv * load_as_float(w, wt, i));
}

__global__ void rope_kernel(void* data, DType t, int64_t T, int64_t H, int64_t D, const int32_t* pos, bool neox,
                            int64_t half, float base, float pos_scale, const float* factors) {
  const int64_t n = T * H * half;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, th = e / half, ti = th / H;
    // As HF computes inv_freq in float32: 1 / base^(2i/rot).
    float inv = 1.0f / powf(base, static_cast<float>(2 * i) / static_cast<float>(2 * half));
    if (factors) inv /= factors[i];
    const float ang = static_cast<float>(pos[ti]) * pos_scale * inv;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    const int64_t row = th * D;
    const int64_t a = row + (neox ? i : 2 * i), c = row + (neox ? i + half : 2 * i + 1);
    const float x0 = load_as_float(data, t, a), x1 = load_as_float(data, t, c);
    store_from_float(data, t, a, x0 * cs - x1 * sn);
    store_from_float(data, t, c, x0 * sn + x1 * cs);
  }
}

// One block per (query t, head h): scores for keys 0..start+t into shared
// memory, a block max and sum, then each thread owns output dims.
__global__ void attention_kernel(const void* q, const void* k, const void* v, DType dt, int64_t H, int64_t KVH,
                                 int64_t D, int64_t start, float scale, void* out, DType ot) {
  extern __shared__ float smem[];
  __shared__ float red[32];
  const int64_t t = blockIdx.x / H, h = blockIdx.x % H, kh = h / (H / KVH);
  const int64_t nk = start + t + 1;
  float* qs = smem;      // D
  float* p = smem + D;   // nk
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) qs[i] = load_as_float(q, dt, (t * H + h) * D + i);
  __syncthreads();
  float mx = -FLT_MAX;
  for (int64_t s = threadIdx.x; s < nk; s += blockDim.x) {
    const int64_t kr = (s * KVH + kh) * D;
    float d = 0.f;
    for (int64_t i = 0; i < D; ++i) d += qs[i] * load_as_float(k, dt, kr + i);
    d *= scale;
    p[s] = d;
    mx = fmaxf(mx, d);
  }
  mx = block_max(mx, red);
  float sum = 0.f;
  for (int64_t s = threadIdx.x; s < nk; s += blockDim.x) {
    const float e = expf(p[s] - mx);
    p[s] = e;
    sum += e;
  }
  sum = block_sum(sum, red);  // its barriers also publish p[]
  const float inv = 1.0f / sum;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float acc = 0.f;
    for (int64_t s = 0; s < nk; ++s) acc += p[s] * load_as_float(v, dt, (s * KVH + kh) * D + i);
    store_from_float(out, ot, (t * H + h) * D + i, acc * inv);
  }
}

__global__ void binary_kernel(Binary op, const void* a, DType at, const void* b, DType bt, int64_t n, int64_t nb,
                              void* y, DType yt) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = load_as_float(a, at, i), w = load_as_float(b, bt, nb == n ? i : i % nb);
    float r;
    if (op == Binary::SwiGlu) r = x / (1.0f + expf(-x)) * w;
    else if (op == Binary::Add) r = x + w;
    else r = x * w;
    store_from_float(y, yt, i, r);
  }
}

constexpr int64_t kMaxAttentionSmem = 200 * 1024;  // under the H100/H200 (227 KB) and A100 (163 KB) opt-in limits

}  // namespace

cudaError_t get_rows(const void* table, DType tt, int64_t V, int64_t D, const int32_t* ids, int64_t T, void* y,
                     DType yt, cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (D <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>((D + kGetRowsThreads - 1) / kGetRowsThreads));
  get_rows_kernel<<<grid, kGetRowsThreads, 0, stream>>>(table, tt, V, D, ids, y, yt);
  return cudaGetLastError();
}

cudaError_t rms_norm(const void* x, DType xt, const void* w, DType wt, int64_t M, int64_t D, float eps, void* y,
                     DType yt, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  rms_norm_kernel<<<static_cast<unsigned>(M), D >= 1024 ? 512 : 128, 0, stream>>>(x, xt, w, wt, D, eps, y, yt);
  return cudaGetLastError();
}

cudaError_t rope(void* data, DType t, int64_t T, int64_t H, int64_t D, const int32_t* pos, bool neox, int64_t rot,
                 float base, float pos_scale, const float* factors, cudaStream_t stream) {
  const int64_t n = T * H * (rot / 2);
  if (n <= 0) return cudaSuccess;
  rope_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(data, t, T, H, D, pos, neox, rot / 2, base, pos_scale,
                                                                 factors);
  return cudaGetLastError();
}

int64_t attention_max_keys() { return kMaxAttentionSmem / 4 - 1024; }

cudaError_t attention(const void* q, const void* k, const void* v, DType t, int64_t T, int64_t H, int64_t KVH,
                      int64_t D, int64_t S, int64_t start, float scale, void* out, DType ot, cudaStream_t stream) {
  (void)S;
  if (T <= 0) return cudaSuccess;
  const size_t smem = static_cast<size_t>(D + start + T) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(kMaxAttentionSmem));
    if (e != cudaSuccess) return e;
  }
  attention_kernel<<<static_cast<unsigned>(T * H), 128, smem, stream>>>(q, k, v, t, H, KVH, D, start, scale, out, ot);
  return cudaGetLastError();
}

cudaError_t binary(Binary op, const void* a, DType at, const void* b, DType bt, int64_t n, int64_t nb, void* y,
                   DType yt, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  binary_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(op, a, at, b, bt, n, nb, y, yt);
  return cudaGetLastError();
}

}  // namespace xqcuda
