// rope_kv.cu: the XQ_OP_ROPE_KV kernel (rope_kv.hpp). One CTA per (row t,
// group of kHeadsPerCta heads of the q|k|v row): the CTA's threads first put
// cos and sin of each rotary pair's angle into shared memory, then rotate (q,
// k heads) or copy (v heads) their heads. Heads [0, H) are q, written to the
// F32 q; [H, H + KVH) k, written rotated to K cache row pos[t]; the rest v,
// copied to V cache row pos[t].
#include <algorithm>

#include "common.cuh"
#include "rope_kv.hpp"

namespace xqcuda {

namespace {

constexpr int kHeadsPerCta = 4;

__global__ void rope_kv_kernel(RopeKvArgs a) {
  extern __shared__ float trig[];  // cos[half], then sin[half]
  const int64_t t = blockIdx.x;
  const int64_t half = a.rot / 2;
  float* cs = trig;
  float* sn = trig + half;
  const int32_t p = a.pos[t];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    // decoder_ops.cu's rope_kernel, term for term (HF's float32 inv_freq:
    // 1 / base^(2i/rot), divided by the llama3 factor), so the two agree bit for bit.
    float inv = 1.0f / powf(a.base, static_cast<float>(2 * i) / static_cast<float>(2 * half));
    if (a.factors) inv /= a.factors[i];
    const float ang = static_cast<float>(p) * a.pos_scale * inv;
    sincosf(ang, &sn[i], &cs[i]);
  }
  __syncthreads();
  const bool cache_row = p >= 0 && p < a.S;
  const int64_t heads = a.H + 2 * a.KVH;
  const int64_t h0 = static_cast<int64_t>(blockIdx.y) * kHeadsPerCta;
  for (int64_t h = h0; h < h0 + kHeadsPerCta && h < heads; ++h) {
    const int64_t src = t * a.ld + h * a.D;
    float* out;
    if (h < a.H) out = a.q + (t * a.H + h) * a.D;
    else if (!cache_row) continue;
    else if (h < a.H + a.KVH) out = a.k_cache + (p * a.KVH + (h - a.H)) * a.D;
    else out = a.v_cache + (p * a.KVH + (h - a.H - a.KVH)) * a.D;
    if (h >= a.H + a.KVH) {  // v: copied
      for (int64_t e = threadIdx.x; e < a.D; e += blockDim.x) out[e] = load_as_float(a.qkv, a.qkv_type, src + e);
      continue;
    }
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
      const int64_t x = a.neox ? i : 2 * i, y = a.neox ? i + half : 2 * i + 1;
      const float x0 = load_as_float(a.qkv, a.qkv_type, src + x), x1 = load_as_float(a.qkv, a.qkv_type, src + y);
      out[x] = x0 * cs[i] - x1 * sn[i];
      out[y] = x0 * sn[i] + x1 * cs[i];
    }
    for (int64_t e = a.rot + threadIdx.x; e < a.D; e += blockDim.x)  // dims past the rotary ones: as they are
      out[e] = load_as_float(a.qkv, a.qkv_type, src + e);
  }
}

}  // namespace

cudaError_t rope_kv(const RopeKvArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return cudaSuccess;
  const int64_t heads = a.H + 2 * a.KVH;
  const unsigned groups = static_cast<unsigned>((heads + kHeadsPerCta - 1) / kHeadsPerCta);
  const int64_t half = a.rot / 2;
  int threads = static_cast<int>((std::max<int64_t>(half, a.D / 2) + 31) / 32 * 32);
  threads = threads < 32 ? 32 : threads > 256 ? 256 : threads;
  const dim3 grid(static_cast<unsigned>(a.T), groups);
  rope_kv_kernel<<<grid, threads, static_cast<size_t>(2 * half) * sizeof(float), stream>>>(a);
  return cudaGetLastError();
}

}  // namespace xqcuda
