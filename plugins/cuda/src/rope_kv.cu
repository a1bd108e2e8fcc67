// rope_kv.cu: the XQ_OP_ROPE_KV kernel (rope_kv.hpp). One CTA per (row t,
// group of heads_per_cta heads of the q|k|v row): the CTA's threads first put
// cos and sin of each rotary pair's angle into shared memory, then rotate (q,
// k heads) or copy (v heads) their heads. Heads [0, H) are q, written to the
// F32 q; [H, H + KVH) k, written rotated to K cache row r = pos[t] (or
// cache_rows[t], a paged slot); the rest v, copied to V cache row r. With
// q/k norm weights, each q and k head is first RMS-normed over D (the CTA's
// threads sum its squares together), then rotated, as RMS_NORM then ROPE.
#include <algorithm>

#include "common.cuh"
#include "pdl.cuh"
#include "rope_kv.hpp"

namespace xqcuda {

namespace {

// Heads a CTA takes one after another. Four share the angles a CTA computes,
// which pays where rows are many (prefill); a decode step's few rows give
// that few CTAs, each walking its four heads as a chain of load-then-store
// round trips (Nsight Compute on an H200, Llama-3.1-8B heads at batch 1: 12
// CTAs, 6.2 us a call; docs/results.md "Session twenty-nine"), so there each
// CTA takes one head and all heads run at once.
constexpr int kHeadsPerCta = 4;
constexpr int64_t kOneHeadMaxCtas = 2048;

int64_t heads_per_cta(int64_t T, int64_t heads) { return T * heads <= kOneHeadMaxCtas ? 1 : kHeadsPerCta; }

// The sum of v over the CTA (blockDim.x a multiple of 32), in every thread.
__device__ float cta_sum(float v, float* red) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  __syncthreads();  // red may still be read by the previous call
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.f;
  for (unsigned w = 0; w < blockDim.x / 32; ++w) s += red[w];
  return s;
}

// Launched with PDL (pdl.cuh): the angles depend only on pos (uploaded by
// the host before the step's kernels) and the constant factors, so they are
// computed before griddepcontrol.wait; qkv (the GEMV's output) is read, and q
// and the caches written, only after it.
__global__ void rope_kv_kernel(RopeKvArgs a, int per_cta) {
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
  pdl_wait();
  // Only now (the q|k|v GEMV has completed) may attention launch, and with it
  // o_proj's GEMV, which starts on its weights while attention runs; an
  // earlier trigger let o_proj's loads compete with the q|k|v GEMV's.
  pdl_launch_dependents();
  __syncthreads();
  __shared__ float red[32];
  const int64_t r = a.cache_rows ? a.cache_rows[t] : p;
  const bool cache_row = r >= 0 && r < a.S;
  const int64_t heads = a.H + 2 * a.KVH;
  const int64_t h0 = static_cast<int64_t>(blockIdx.y) * per_cta;
  for (int64_t h = h0; h < h0 + per_cta && h < heads; ++h) {
    const int64_t src = t * a.ld + h * a.D;
    void* out;
    DType out_type = a.cache_type;
    int64_t at;
    const float* w = nullptr;
    if (h < a.H) {
      out = a.q, out_type = DType::F32, at = (t * a.H + h) * a.D, w = a.q_norm;
    } else if (!cache_row) {
      continue;  // the same for every thread of the CTA
    } else if (h < a.H + a.KVH) {
      out = a.k_cache, at = (r * a.KVH + (h - a.H)) * a.D, w = a.k_norm;
    } else {
      out = a.v_cache, at = (r * a.KVH + (h - a.H - a.KVH)) * a.D;
    }
    if (h >= a.H + a.KVH) {  // v: copied
      for (int64_t e = threadIdx.x; e < a.D; e += blockDim.x)
        store_from_float(out, out_type, at + e, load_as_float(a.qkv, a.qkv_type, src + e));
      continue;
    }
    // x as RMS_NORM writes it (x * (1 / rms)) * w, or x itself.
    float inv_rms = 1.f;
    if (w) {
      float ss = 0.f;
      for (int64_t e = threadIdx.x; e < a.D; e += blockDim.x) {
        const float x = load_as_float(a.qkv, a.qkv_type, src + e);
        ss += x * x;
      }
      inv_rms = 1.0f / sqrtf(cta_sum(ss, red) / static_cast<float>(a.D) + a.eps);
    }
    auto in = [&](int64_t e) {
      const float x = load_as_float(a.qkv, a.qkv_type, src + e);
      return w ? x * inv_rms * w[e] : x;
    };
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
      const int64_t x = a.neox ? i : 2 * i, y = a.neox ? i + half : 2 * i + 1;
      const float x0 = in(x), x1 = in(y);
      store_from_float(out, out_type, at + x, x0 * cs[i] - x1 * sn[i]);
      store_from_float(out, out_type, at + y, x0 * sn[i] + x1 * cs[i]);
    }
    for (int64_t e = a.rot + threadIdx.x; e < a.D; e += blockDim.x)  // dims past the rotary ones: as they are
      store_from_float(out, out_type, at + e, in(e));
  }
}

}  // namespace

cudaError_t rope_kv(const RopeKvArgs& a, cudaStream_t stream) {
  if (a.T <= 0) return cudaSuccess;
  const int64_t heads = a.H + 2 * a.KVH;
  const int64_t per_cta = heads_per_cta(a.T, heads);
  const unsigned groups = static_cast<unsigned>((heads + per_cta - 1) / per_cta);
  const int64_t half = a.rot / 2;
  int threads = static_cast<int>((std::max<int64_t>(half, a.D / 2) + 31) / 32 * 32);
  threads = threads < 32 ? 32 : threads > 256 ? 256 : threads;
  const dim3 grid(static_cast<unsigned>(a.T), groups);
  return launch_pdl(rope_kv_kernel, grid, dim3(threads), static_cast<size_t>(2 * half) * sizeof(float), stream, a,
                    static_cast<int>(per_cta));
}

}  // namespace xqcuda
