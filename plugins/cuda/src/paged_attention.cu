// paged_attention.cu: the paged KV cache's two kernels (paged_attention.hpp):
// writing new K/V rows into their block slots, and attention of one query
// row per (sequence, position) over that sequence's blocks.
//
// Attention follows the split-K ("flash-decoding") scheme of FlashAttention's
// decoding path (Dao et al., https://crfm.stanford.edu/2023/10/12/flashdecoding.html):
// a CTA owns (query row, kv head, key split); its 4 warps take tiles of 32
// keys in turn for every query head of the GQA group at once, and keep an
// online softmax (running max m, sum l, accumulator) per head in registers.
// The warps merge in shared memory; with one split the CTA writes the
// output, otherwise (m, l, acc) go to a workspace that a second kernel
// merges.
#include <cfloat>

#include "common.cuh"
#include "paged_attention.hpp"
#include "paged_table.cuh"

namespace xqcuda {

namespace {

constexpr int kWarps = 4;

__global__ void kv_write_kernel(const void* src, DType st, int64_t ld, int64_t T, int64_t row_elems,
                                const int32_t* slots, void* pool, DType pt) {
  const int64_t t = blockIdx.x;
  if (t >= T) return;
  const int32_t slot = slots[t];
  if (slot < 0) return;
  for (int64_t i = threadIdx.x; i < row_elems; i += blockDim.x)
    store_from_float(pool, pt, static_cast<int64_t>(slot) * row_elems + i, load_as_float(src, st, t * ld + i));
}

template <bool BF16>
__device__ __forceinline__ void load8(const void* pool, int64_t at, float* out) {
  if constexpr (BF16) {
    const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(pool) + at);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else {
    const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(pool) + at);
    const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(pool) + at + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  }
}

template <bool BF16>
__device__ __forceinline__ float load1(const void* pool, int64_t at) {
  if constexpr (BF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(pool)[at]);
  else return static_cast<const float*>(pool)[at];
}

// A warp takes 32 keys at a time: lane i scores key i against every query
// head of the group (its K row read with 16-byte loads, q from shared
// memory), the tile's max and sum update the online softmax, then the warp
// walks the 32 keys accumulating V, each lane owning EPL consecutive output
// elements (coalesced rows). Needs D % 8 == 0.
// EPL: elements per lane (D <= 32 * EPL); G: query heads per kv head bound.
template <int EPL, int G, bool BF16>
__global__ void __launch_bounds__(kWarps * 32) paged_attention_kernel(
    const float* __restrict__ q, const void* __restrict__ kpool, const void* __restrict__ vpool,
    RowTables tables, int64_t H, int64_t KVH, int64_t D, int64_t BS, float scale,
    int64_t keys_per_split, int splits, void* out, DType ot, float* part_acc, float* part_ml,
    const int32_t* __restrict__ skip_tiles, int64_t skip_tile_rows) {
  extern __shared__ float sm[];
  if (skip_tiles && skip_tiles[blockIdx.x / skip_tile_rows]) return;  // the prefill kernel's row
  float* s_q = sm;                          // [G][D]
  float* s_ml = s_q + G * D;                // [kWarps][G][2]
  float* s_acc = s_ml + kWarps * G * 2;     // [kWarps][G][32 * EPL]
  const int64_t t = blockIdx.x;
  const int64_t kh = blockIdx.y;
  const int split = static_cast<int>(blockIdx.z);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t group = H / KVH;
  const int32_t* __restrict__ row = tables.blocks(t);
  const int64_t n_keys = static_cast<int64_t>(tables.position(t)) + 1;
  const int64_t k0 = split * keys_per_split;
  const int64_t k1 = min(n_keys, k0 + keys_per_split);
  for (int64_t i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int64_t g = i / D;
    s_q[i] = g < group ? q[(t * H + kh * group + g) * D + i % D] * scale : 0.f;
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
  const int64_t my0 = static_cast<int64_t>(lane) * EPL;  // this lane's first output element
  for (int64_t tile = k0 + 32 * warp; tile < k1; tile += 32 * kWarps) {
    const int64_t j = tile + lane;
    const bool valid = j < k1;
    const int64_t base = valid ? (static_cast<int64_t>(row[j / BS]) * BS + j % BS) * row_elems + kh * D : 0;
    float sc[G];
#pragma unroll
    for (int g = 0; g < G; ++g) sc[g] = 0.f;
    if (valid) {
      for (int64_t d = 0; d < D; d += 8) {
        float kv[8];
        load8<BF16>(kpool, base + d, kv);
#pragma unroll
        for (int g = 0; g < G; ++g) {
          const float* qg = s_q + g * D + d;
#pragma unroll
          for (int i = 0; i < 8; ++i) sc[g] += qg[i] * kv[i];
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
      const float c = __expf(m[g] - mn);
      p[g] = valid ? __expf(sc[g] - mn) : 0.f;
      float ps = p[g];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      l[g] = l[g] * c + ps;
      m[g] = mn;
#pragma unroll
      for (int e = 0; e < EPL; ++e) acc[g][e] *= c;
    }
    const int64_t n_here = k1 - tile < 32 ? k1 - tile : 32;
#pragma unroll 4
    for (int kk = 0; kk < n_here; ++kk) {
      const int64_t vb = __shfl_sync(0xffffffffu, base, kk);
      float vv[EPL];
#pragma unroll
      for (int e = 0; e < EPL; ++e) vv[e] = my0 + e < D ? load1<BF16>(vpool, vb + my0 + e) : 0.f;
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
      const float c = __expf(mw - mx);
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

__global__ void paged_combine_kernel(const float* part_acc, const float* part_ml, int splits, int64_t H, int64_t D,
                                     void* out, DType ot, const int32_t* skip_tiles, int64_t skip_tile_rows) {
  const int64_t th = blockIdx.x;  // t * H + h
  if (skip_tiles && skip_tiles[th / H / skip_tile_rows]) return;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    float mx = -FLT_MAX;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, part_ml[(th * splits + s) * 2]);
    float lsum = 0.f, a = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float ms = part_ml[(th * splits + s) * 2];
      if (ms == -FLT_MAX) continue;
      const float c = __expf(ms - mx);
      lsum += part_ml[(th * splits + s) * 2 + 1] * c;
      a += part_acc[(th * splits + s) * D + i] * c;
    }
    store_from_float(out, ot, th * D + i, lsum > 0.f ? a / lsum : 0.f);
  }
}

template <int EPL, int G, bool BF16>
cudaError_t launch_typed(const PagedAttentionArgs& a, int splits, int64_t keys_per_split, float* part_acc,
                         float* part_ml, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(a.T), static_cast<unsigned>(a.KVH), static_cast<unsigned>(splits));
  const size_t smem = (static_cast<size_t>(G) * a.D + static_cast<size_t>(kWarps) * G * (2 + 32 * EPL)) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(paged_attention_kernel<EPL, G, BF16>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  paged_attention_kernel<EPL, G, BF16><<<grid, kWarps * 32, smem, stream>>>(
      a.q, a.kpool, a.vpool, RowTables{a.table, a.table_ld, a.T, a.n_seq}, a.H, a.KVH, a.D, a.BS, a.scale, keys_per_split, splits, a.out,
      a.out_type, part_acc, part_ml, a.skip_tiles, a.skip_tile_rows);
  return cudaGetLastError();
}

template <int EPL, int G>
cudaError_t launch(const PagedAttentionArgs& a, int splits, int64_t kps, float* pa, float* pm, cudaStream_t s) {
  return a.pool_type == DType::BF16 ? launch_typed<EPL, G, true>(a, splits, kps, pa, pm, s)
                                    : launch_typed<EPL, G, false>(a, splits, kps, pa, pm, s);
}

template <int EPL>
cudaError_t launch_g(const PagedAttentionArgs& a, int splits, int64_t kps, float* pa, float* pm, cudaStream_t s) {
  const int64_t g = a.H / a.KVH;
  if (g <= 1) return launch<EPL, 1>(a, splits, kps, pa, pm, s);
  if (g <= 2) return launch<EPL, 2>(a, splits, kps, pa, pm, s);
  if (g <= 4) return launch<EPL, 4>(a, splits, kps, pa, pm, s);
  if (g <= 8) return launch<EPL, 8>(a, splits, kps, pa, pm, s);
  return launch<EPL, 16>(a, splits, kps, pa, pm, s);
}

}  // namespace

cudaError_t kv_write(const void* src, DType st, int64_t ld, int64_t T, int64_t row_elems, const int32_t* slots,
                     void* pool, DType pt, cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  kv_write_kernel<<<static_cast<unsigned>(T), 256, 0, stream>>>(src, st, ld, T, row_elems, slots, pool, pt);
  return cudaGetLastError();
}

int paged_attention_splits(int64_t T, int64_t KVH, int64_t max_keys, int sm_count) {
  // Enough CTAs to cover the chip twice, but at least 256 keys per split.
  const int64_t ctas = T * KVH;
  const int64_t want = (2 * static_cast<int64_t>(sm_count) + ctas - 1) / ctas;
  const int64_t by_len = (max_keys + 255) / 256;
  int64_t s = want < by_len ? want : by_len;
  if (s < 1) s = 1;
  if (s > 64) s = 64;
  return static_cast<int>(s);
}

size_t paged_attention_workspace(int64_t T, int64_t H, int64_t D, int splits) {
  if (splits <= 1) return 0;
  return static_cast<size_t>(T * H * splits) * static_cast<size_t>(D + 2) * sizeof(float);
}

cudaError_t paged_attention(const PagedAttentionArgs& a, int splits, void* workspace, cudaStream_t stream) {
  if (a.T <= 0) return cudaSuccess;
  const int64_t keys_per_split = (a.max_keys + splits - 1) / splits;
  float* part_acc = static_cast<float*>(workspace);
  float* part_ml = splits > 1 ? part_acc + a.T * a.H * splits * a.D : nullptr;
  cudaError_t e;
  if (a.D <= 32) e = launch_g<1>(a, splits, keys_per_split, part_acc, part_ml, stream);
  else if (a.D <= 64) e = launch_g<2>(a, splits, keys_per_split, part_acc, part_ml, stream);
  else if (a.D <= 128) e = launch_g<4>(a, splits, keys_per_split, part_acc, part_ml, stream);
  else e = launch_g<8>(a, splits, keys_per_split, part_acc, part_ml, stream);
  if (e != cudaSuccess || splits <= 1) return e;
  paged_combine_kernel<<<static_cast<unsigned>(a.T * a.H), 128, 0, stream>>>(part_acc, part_ml, splits, a.H, a.D,
                                                                             a.out, a.out_type, a.skip_tiles,
                                                                             a.skip_tile_rows);
  return cudaGetLastError();
}

}  // namespace xqcuda
