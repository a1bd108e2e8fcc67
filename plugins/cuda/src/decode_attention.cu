// decode_attention.cu: split-K ATTENTION over a contiguous KV cache
// (decode_attention.hpp). The scheme is the paged kernel's
// (paged_attention.cu, after FlashAttention's decoding path:
// https://crfm.stanford.edu/2023/10/12/flashdecoding.html) on a cache
// addressed as [S, KVH, D] rows instead of through a block table: a CTA owns
// (query row t, kv head, key split), its 4 warps take 32-key tiles in turn
// and keep an online softmax per query head of the group in registers, the
// warps merge in shared memory, and splits merge in a second kernel.
#include <cfloat>

#include "common.cuh"
#include "decode_attention.hpp"

namespace xqcuda {

namespace {

constexpr int kWarps = 4;
constexpr int kTile = 32;  // keys per warp step (one per lane)
constexpr int kBatch = 4;  // 8-element K chunks loaded per lane before use

// Eight consecutive K elements from 16-byte aligned storage.
template <bool BF16>
__device__ __forceinline__ void load8(const void* base, int64_t at, float* out) {
  if constexpr (BF16) {
    const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(base) + at);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + at);
    const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + at + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  }
}

template <bool BF16>
__device__ __forceinline__ float load1(const void* base, int64_t at) {
  if constexpr (BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[at]);
  else return static_cast<const float*>(base)[at];
}

// EPL: output elements per lane (D <= 32 * EPL); G: query heads per kv head
// bound. Lane i of a warp scores key (tile + i) against every head of the
// group, then the warp walks the tile's keys accumulating V rows, each lane
// owning EPL consecutive output elements.
template <int EPL, int G, bool BF16>
__global__ void __launch_bounds__(kWarps * 32) decode_attention_kernel(
    const void* __restrict__ q, const void* __restrict__ k, const void* __restrict__ v, int64_t H, int64_t KVH,
    int64_t D, int64_t start, float scale, int64_t keys_per_split, int splits, void* out, DType ot, float* part_acc,
    float* part_ml) {
  extern __shared__ float sm[];
  float* s_q = sm;                       // [G][D], pre-scaled
  float* s_ml = s_q + G * D;             // [kWarps][G][2]
  float* s_acc = s_ml + kWarps * G * 2;  // [kWarps][G][32 * EPL]
  const int64_t t = blockIdx.x;
  const int64_t kh = blockIdx.y;
  const int split = static_cast<int>(blockIdx.z);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t group = H / KVH;
  const int64_t n_keys = start + t + 1;  // causal: row t sees keys 0 .. start + t
  const int64_t k0 = split * keys_per_split;
  const int64_t k1 = min(n_keys, k0 + keys_per_split);
  const DType qt = BF16 ? DType::BF16 : DType::F32;
  for (int64_t i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int64_t g = i / D;
    s_q[i] = g < group ? load_as_float(q, qt, (t * H + kh * group + g) * D + i % D) * scale : 0.f;
  }
  __syncthreads();

  float acc[G][EPL];
  float m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -FLT_MAX;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < EPL; ++e) acc[g][e] = 0.f;
  }
  const int64_t row_elems = KVH * D;
  const int64_t my0 = static_cast<int64_t>(lane) * EPL;
  for (int64_t tile = k0 + kTile * warp; tile < k1; tile += kTile * kWarps) {
    const int64_t j = tile + lane;
    const bool valid = j < k1;
    const int64_t base = valid ? j * row_elems + kh * D : 0;
    float sc[G];
#pragma unroll
    for (int g = 0; g < G; ++g) sc[g] = 0.f;
    if (valid) {
      // The row's 8-element chunks (at most 4 * EPL), B loads issued before
      // any is used: a loop over a run-time D can wait one memory latency
      // per chunk (16 for D = 128), and a split of one tile is all latency.
      constexpr int B = EPL >= 8 ? (G >= 16 ? 1 : 2) : kBatch;  // D up to 256: fewer in flight, no spills
#pragma unroll
      for (int c0 = 0; c0 < 4 * EPL; c0 += B) {
        float kv[B][8];
#pragma unroll
        for (int u = 0; u < B; ++u)
          if ((c0 + u) * 8 < D) load8<BF16>(k, base + (c0 + u) * 8, kv[u]);
#pragma unroll
        for (int u = 0; u < B; ++u) {
          if ((c0 + u) * 8 >= D) continue;
#pragma unroll
          for (int g = 0; g < G; ++g) {
            const float* qg = s_q + g * D + (c0 + u) * 8;
#pragma unroll
            for (int i = 0; i < 8; ++i) sc[g] += qg[i] * kv[u][i];
          }
        }
      }
    }
    float p[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mt = valid ? sc[g] : -FLT_MAX;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
      const float mn = fmaxf(m[g], mt);
      const float c = expf(m[g] - mn);
      p[g] = valid ? expf(sc[g] - mn) : 0.f;
      float ps = p[g];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      l[g] = l[g] * c + ps;
      m[g] = mn;
#pragma unroll
      for (int e = 0; e < EPL; ++e) acc[g][e] *= c;
    }
    const int64_t n_here = k1 - tile < kTile ? k1 - tile : kTile;
    // V rows of several keys in flight (fewer for D up to 256: no spills).
    constexpr int kVUnroll = EPL >= 8 ? (G >= 16 ? 2 : 4) : 8;
#pragma unroll kVUnroll
    for (int kk = 0; kk < n_here; ++kk) {
      const int64_t vb = (tile + kk) * row_elems + kh * D;
      float vv[EPL];
#pragma unroll
      for (int e = 0; e < EPL; ++e) vv[e] = my0 + e < D ? load1<BF16>(v, vb + my0 + e) : 0.f;
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float pk = __shfl_sync(0xffffffffu, p[g], kk);
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[g][e] += pk * vv[e];
      }
    }
  }

  // Merge the warps: each writes (m, l, acc) per head; all threads combine.
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) {
      s_ml[(warp * G + g) * 2] = m[g];
      s_ml[(warp * G + g) * 2 + 1] = l[g];
    }
#pragma unroll
    for (int e = 0; e < EPL; ++e) s_acc[(warp * G + g) * 32 * EPL + my0 + e] = acc[g][e];
  }
  __syncthreads();
  for (int64_t idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    const int g = static_cast<int>(idx / D);
    const int64_t i = idx % D;
    float mx = -FLT_MAX;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_ml[(w * G + g) * 2]);
    float lsum = 0.f, a = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      const float mw = s_ml[(w * G + g) * 2];
      if (mw == -FLT_MAX) continue;  // this warp saw no key
      const float c = expf(mw - mx);
      lsum += s_ml[(w * G + g) * 2 + 1] * c;
      a += s_acc[(w * G + g) * 32 * EPL + i] * c;
    }
    const int64_t h = kh * group + g;
    if (splits == 1) {
      store_from_float(out, ot, (t * H + h) * D + i, lsum > 0.f ? a / lsum : 0.f);
    } else {
      const int64_t pi = (t * H + h) * splits + split;
      part_acc[pi * D + i] = a;
      if (i == 0) {
        part_ml[pi * 2] = mx;
        part_ml[pi * 2 + 1] = lsum;
      }
    }
  }
}

// One block per (t, h): the splits' (m, l, acc) merged with their max.
__global__ void decode_combine_kernel(const float* part_acc, const float* part_ml, int splits, int64_t D, void* out,
                                      DType ot) {
  const int64_t th = blockIdx.x;  // t * H + h
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float mx = -FLT_MAX;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, part_ml[(th * splits + s) * 2]);
    float lsum = 0.f, a = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float ms = part_ml[(th * splits + s) * 2];
      if (ms == -FLT_MAX) continue;  // a split past this row's last key
      const float c = expf(ms - mx);
      lsum += part_ml[(th * splits + s) * 2 + 1] * c;
      a += part_acc[(th * splits + s) * D + i] * c;
    }
    store_from_float(out, ot, th * D + i, lsum > 0.f ? a / lsum : 0.f);
  }
}

int64_t max_keys(const DecodeAttentionArgs& a) { return a.start + a.T; }

int64_t round_up_tile(int64_t n) { return (n + kTile - 1) / kTile * kTile; }

int64_t keys_per_split(const DecodeAttentionArgs& a, int splits) {
  return round_up_tile((max_keys(a) + splits - 1) / splits);
}

template <int EPL, int G, bool BF16>
cudaError_t launch_typed(const DecodeAttentionArgs& a, int splits, float* part_acc, float* part_ml, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(a.T), static_cast<unsigned>(a.KVH), static_cast<unsigned>(splits));
  const size_t smem = (static_cast<size_t>(G) * a.D + static_cast<size_t>(kWarps) * G * (2 + 32 * EPL)) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(decode_attention_kernel<EPL, G, BF16>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  decode_attention_kernel<EPL, G, BF16><<<grid, kWarps * 32, smem, s>>>(
      a.q, a.k, a.v, a.H, a.KVH, a.D, a.start, a.scale, keys_per_split(a, splits), splits, a.out, a.out_type, part_acc,
      part_ml);
  return cudaGetLastError();
}

template <int EPL, int G>
cudaError_t launch(const DecodeAttentionArgs& a, int splits, float* pa, float* pm, cudaStream_t s) {
  return a.kv_type == DType::BF16 ? launch_typed<EPL, G, true>(a, splits, pa, pm, s)
                                  : launch_typed<EPL, G, false>(a, splits, pa, pm, s);
}

template <int EPL>
cudaError_t launch_g(const DecodeAttentionArgs& a, int splits, float* pa, float* pm, cudaStream_t s) {
  const int64_t g = a.H / a.KVH;
  if (g <= 1) return launch<EPL, 1>(a, splits, pa, pm, s);
  if (g <= 2) return launch<EPL, 2>(a, splits, pa, pm, s);
  if (g <= 4) return launch<EPL, 4>(a, splits, pa, pm, s);
  if (g <= 8) return launch<EPL, 8>(a, splits, pa, pm, s);
  return launch<EPL, 16>(a, splits, pa, pm, s);
}

}  // namespace

bool decode_attention_fits(const DecodeAttentionArgs& a) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (a.kv_type == DType::F32 || a.kv_type == DType::BF16) && a.D > 0 && a.D % 8 == 0 && a.D <= 256 &&
         a.KVH > 0 && a.H % a.KVH == 0 && a.H / a.KVH <= 16 && aligned(a.k) && aligned(a.v);
}

int decode_attention_splits(const DecodeAttentionArgs& a, int sm_count) {
  // Enough CTAs to cover the chip twice, down to one 32-key tile per split:
  // a decode step has few rows, so its keys are what can be spread.
  const int64_t ctas = a.T * a.KVH;
  if (ctas <= 0) return 1;
  const int64_t want = (2 * static_cast<int64_t>(sm_count) + ctas - 1) / ctas;
  const int64_t tiles = (max_keys(a) + kTile - 1) / kTile;
  int64_t s = want < tiles ? want : tiles;
  if (s < 1) s = 1;
  if (s > 64) s = 64;
  // Splits of whole tiles: the count that keys_per_split() leaves non-empty.
  const int64_t kps = keys_per_split(a, static_cast<int>(s));
  return static_cast<int>((max_keys(a) + kps - 1) / kps);
}

size_t decode_attention_workspace(const DecodeAttentionArgs& a, int splits) {
  if (splits <= 1) return 0;
  return static_cast<size_t>(a.T * a.H * splits) * static_cast<size_t>(a.D + 2) * sizeof(float);
}

cudaError_t decode_attention(const DecodeAttentionArgs& a, int splits, void* workspace, cudaStream_t stream) {
  if (a.T <= 0) return cudaSuccess;
  float* part_acc = static_cast<float*>(workspace);
  float* part_ml = splits > 1 ? part_acc + a.T * a.H * splits * a.D : nullptr;
  cudaError_t e;
  if (a.D <= 32) e = launch_g<1>(a, splits, part_acc, part_ml, stream);
  else if (a.D <= 64) e = launch_g<2>(a, splits, part_acc, part_ml, stream);
  else if (a.D <= 128) e = launch_g<4>(a, splits, part_acc, part_ml, stream);
  else e = launch_g<8>(a, splits, part_acc, part_ml, stream);
  if (e != cudaSuccess || splits <= 1) return e;
  decode_combine_kernel<<<static_cast<unsigned>(a.T * a.H), 128, 0, stream>>>(part_acc, part_ml, splits, a.D, a.out,
                                                                             a.out_type);
  return cudaGetLastError();
}

}  // namespace xqcuda
