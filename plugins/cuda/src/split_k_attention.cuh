// split_k_attention.cuh: the split-K ("flash-decoding") attention's shared
// parts and its key-per-lane kernel, used by ATTENTION over a contiguous KV
// cache (decode_attention.cu) and PAGED_ATTENTION over block tables
// (paged_attention.cu) through split_k_launch.cuh, which also launches the
// dim-lanes kernel (split_k_dim_lanes.cuh). The two callers differ only in
// where key j of a row lives: the `Keys` template parameter answers that
// (ContiguousKeys, BlockTableKeys below), everything else is shared.
//
// The scheme is FlashAttention's decoding path (Dao et al.,
// https://crfm.stanford.edu/2023/10/12/flashdecoding.html): a CTA owns
// (query row t, kv head, key split); its 4 warps take key tiles in turn
// and keep an online softmax (running max m, sum l, accumulator) per query
// head of the GQA group in registers, the warps merge in shared memory
// (finish_cta), and with more than one split the splits' (m, l, acc) are
// merged by the last CTA of a (row, kv head) to finish (the default) or,
// with XQUANT_DECODE_ATTENTION_ONE_PASS=2 or 0, by a second kernel (one
// launch: an arrival counter per (row, kv head), the threadfence-reduction
// pattern of the CUDA samples' threadFenceReduction and CUB's single-pass
// scans). Scores are kept in base 2 (q pre-scaled by log2(e), exp2f).
// Split counts: split_k_plan.hpp.
#pragma once

#include <cfloat>

#include "common.cuh"
#include "pdl.cuh"
#include "paged_table.cuh"
#include "split_k_plan.hpp"

namespace xqcuda {
namespace split_k {

constexpr int kWarps = 4;
constexpr int kTile = static_cast<int>(kSplitKTile);  // keys per warp step (one per lane)
constexpr int kBatch = 4;                              // 8-element K chunks loaded per lane before use
constexpr float kLog2e = 1.4426950408889634f;          // exp(x) == exp2(x * log2(e))

// One arrival counter per (row, kv head) for one-pass launches, zero at
// module load and put back to zero by the CTA that merges, so a recorded
// graph replays with the same state. One array per translation unit (the
// contiguous and the paged launchers each have theirs); launches of one
// launcher must not run concurrently on two streams (the provider has one).
static __device__ unsigned int g_split_tickets[kSplitKMaxTickets];

// ---- where key j of query row t lives ---------------------------------------
// A Keys type gives, per query row, a Row with n_keys() (row t sees keys
// 0 .. n_keys() - 1) and slot(j): the index of key j's [KVH, D] row in the
// K and V storage. kSlotIsKey: slot(j) == j, so the V loop recomputes a key's
// row instead of taking it from the lane that scored the key. skipped(t):
// rows another kernel answers.

// A contiguous cache [S, KVH, D]; row t sees keys 0 .. start + t (causal).
struct ContiguousKeys {
  int64_t start;
  static constexpr bool kSlotIsKey = true;
  struct Row {
    int64_t n;
    __device__ __forceinline__ int64_t n_keys() const { return n; }
    __device__ __forceinline__ int64_t slot(int64_t j) const { return j; }
    // Slots of keys j0, j0 + STEP, ... (N of them; 32-bit, as block ids
    // are, to spare registers). Keys at or past the row's end get their
    // would-be row: the caller loads only keys before it.
    template <int N, int STEP>
    __device__ __forceinline__ void slots(int64_t j0, int64_t, int32_t (&out)[N]) const {
#pragma unroll
      for (int s = 0; s < N; ++s) out[s] = static_cast<int32_t>(j0) + s * STEP;
    }
  };
  __device__ __forceinline__ Row row(int64_t t) const { return {start + t + 1}; }
  __device__ __forceinline__ bool skipped(int64_t) const { return false; }
};

// Pools [NB, BS, KVH, D] through block tables (paged_table.cuh): key j of
// row t sits in slot blocks(t)[j / BS] * BS + j % BS. Rows whose prefill
// tile the tensor-core kernel answered (prefill_attention.hpp) are skipped:
// row t when skip_tiles[t / skip_tile_rows] != 0 (skip_tiles null: none).
struct BlockTableKeys {
  RowTables tables;
  int64_t BS;
  const int32_t* skip_tiles;
  int64_t skip_tile_rows;
  static constexpr bool kSlotIsKey = false;
  struct Row {
    const int32_t* __restrict__ blocks;
    int64_t n, BS;
    __device__ __forceinline__ int64_t n_keys() const { return n; }
    __device__ __forceinline__ int64_t slot(int64_t j) const { return static_cast<int64_t>(blocks[j / BS]) * BS + j % BS; }
    // Slots of keys j0, j0 + STEP, ... (N of them; 32-bit, as block ids
    // are: a pool holds fewer than 2^31 slots); keys at or past `end` get 0
    // and read no table entry. One division for the run: the rest walk
    // (block, offset) forward.
    template <int N, int STEP>
    __device__ __forceinline__ void slots(int64_t j0, int64_t end, int32_t (&out)[N]) const {
      const int bs = static_cast<int>(BS);
      int b = static_cast<int>(j0) / bs, o = static_cast<int>(j0) - b * bs;
#pragma unroll
      for (int s = 0; s < N; ++s) {
        out[s] = j0 + s * STEP < end ? blocks[b] * bs + o : 0;
        o += STEP;
        while (o >= bs) o -= bs, ++b;
      }
    }
  };
  __device__ __forceinline__ Row row(int64_t t) const {
    return {tables.blocks(t), static_cast<int64_t>(tables.position(t)) + 1, BS};
  }
  __device__ __forceinline__ bool skipped(int64_t t) const { return skip_tiles && skip_tiles[t / skip_tile_rows]; }
};

// ---- loads --------------------------------------------------------------------

// Two BF16 values packed in a 32-bit word (element 0 in the low half) as floats.
__device__ __forceinline__ void bf16x2_bits_to_float(unsigned w, float* out) {
  out[0] = __uint_as_float(w << 16);
  out[1] = __uint_as_float(w & 0xffff0000u);
}

// Eight consecutive K elements from 16-byte aligned storage. The BF16 chunk
// is copied into a register first: bf16x8_to_float takes a reference, and
// one bound to global memory compiles to four 32-bit loads, not one LDG.128.
template <bool BF16>
__device__ __forceinline__ void load8(const void* base, int64_t at, float* out) {
  if constexpr (BF16) {
    const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(base) + at);
    bf16x8_to_float(u, out);
  } else {
    const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + at);
    const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(base) + at + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  }
}

// A lane's EPL consecutive V elements in one load (two 16-byte loads for
// F32 with EPL 8): `at` is a multiple of EPL in a row that starts 16-byte
// aligned with D % 8 == 0, so the load is aligned to its width.
template <bool BF16, int EPL>
__device__ __forceinline__ void load_lane(const void* base, int64_t at, float* out) {
  if constexpr (BF16) {
    const __nv_bfloat16* p = static_cast<const __nv_bfloat16*>(base) + at;
    if constexpr (EPL == 8) {
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      bf16x8_to_float(u, out);
    } else if constexpr (EPL == 4) {
      const uint2 u = *reinterpret_cast<const uint2*>(p);
      bf16x2_bits_to_float(u.x, out);
      bf16x2_bits_to_float(u.y, out + 2);
    } else if constexpr (EPL == 2) {
      bf16x2_bits_to_float(*reinterpret_cast<const unsigned*>(p), out);
    } else {
      out[0] = __bfloat162float(*p);
    }
  } else {
    const float* p = static_cast<const float*>(base) + at;
    if constexpr (EPL >= 4) {
#pragma unroll
      for (int c = 0; c < EPL / 4; ++c) {
        const float4 f = reinterpret_cast<const float4*>(p)[c];
        out[4 * c] = f.x, out[4 * c + 1] = f.y, out[4 * c + 2] = f.z, out[4 * c + 3] = f.w;
      }
    } else if constexpr (EPL == 2) {
      const float2 f = *reinterpret_cast<const float2*>(p);
      out[0] = f.x, out[1] = f.y;
    } else {
      out[0] = *p;
    }
  }
}

// ---- the kernels ----------------------------------------------------------------

// The splits' (m, l, acc) of head h of row t merged with their max into
// out element i; partials are read past L1 (__ldcg: another CTA wrote them).
__device__ __forceinline__ float merged(const float* part_acc, const float* part_ml, int splits, int64_t th,
                                        int64_t D, int64_t i) {
  float mx = -FLT_MAX;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, __ldcg(part_ml + (th * splits + s) * 2));
  float lsum = 0.f, a = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float ms = __ldcg(part_ml + (th * splits + s) * 2);
    if (ms == -FLT_MAX) continue;  // a split past this row's last key
    const float c = exp2f(ms - mx);
    lsum += __ldcg(part_ml + (th * splits + s) * 2 + 1) * c;
    a += __ldcg(part_acc + (th * splits + s) * D + i) * c;
  }
  return lsum > 0.f ? a / lsum : 0.f;
}

// One-pass ending: each CTA publishes its partials (__threadfence), takes a
// ticket for its (row, kv head); the CTA drawing the last one merges every
// split of the group's heads and puts the counter back to zero. `flag` is
// one float of shared memory, `w` room for group * splits floats. The merge
// is spread over the CTA: every (head, split) weight exp2(m_s - max) / sum
// is computed once into `w`, then each output element sums its splits'
// accumulators, 8 loads in flight (a first version that walked the (m, l)
// pairs per element serially took 0.5x the two-kernel time on an H200).
__device__ __forceinline__ void merge_if_last(const float* part_acc, const float* part_ml, int splits, int64_t t,
                                              int64_t kh, int64_t KVH, int64_t H, int64_t group, int64_t D,
                                              void* out, DType ot, float* flag, float* w) {
  __threadfence();
  __syncthreads();  // every thread's partials are out, and s_ml is free to reuse
  if (threadIdx.x == 0) {
    unsigned int* ticket = &g_split_tickets[t * KVH + kh];
    const bool last = atomicAdd(ticket, 1u) == static_cast<unsigned>(splits - 1);
    if (last) atomicExch(ticket, 0u);
    *flag = last ? 1.f : 0.f;
  }
  __syncthreads();
  if (*flag == 0.f) return;
  __threadfence();
  const int64_t th0 = t * H + kh * group;  // the group's first (row, head)
  for (int64_t i = threadIdx.x; i < group * splits; i += blockDim.x) w[i] = __ldcg(part_ml + (th0 * splits + i) * 2);
  __syncthreads();
  // One thread per head: the max, then the weights (0 for splits that saw no key).
  if (threadIdx.x < group) {
    float* wg = w + threadIdx.x * splits;
    const float* ml = part_ml + (th0 + threadIdx.x) * splits * 2;
    float mx = -FLT_MAX;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, wg[s]);
    float lsum = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float c = wg[s] == -FLT_MAX ? 0.f : exp2f(wg[s] - mx);
      lsum += __ldcg(ml + s * 2 + 1) * c;
      wg[s] = c;
    }
    const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
    for (int s = 0; s < splits; ++s) wg[s] *= inv;
  }
  __syncthreads();
  for (int64_t idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    const int64_t g = idx / D, i = idx % D;
    const float* acc = part_acc + (th0 + g) * splits * D + i;
    const float* wg = w + g * splits;
    float a = 0.f;
    int s = 0;
    for (; s + 8 <= splits; s += 8) {
      float v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) v[u] = __ldcg(acc + (s + u) * D);
#pragma unroll
      for (int u = 0; u < 8; ++u) a += wg[s + u] * v[u];
    }
    for (; s < splits; ++s) a += wg[s] * __ldcg(acc + s * D);
    store_from_float(out, ot, (th0 + g) * D + i, a);
  }
}

// Each query head's online-softmax state before a CTA's first key tile
// (both kernels): running max -FLT_MAX, sum 0, accumulator 0.
template <int G, int E>
__device__ __forceinline__ void init_softmax_state(float (&acc)[G][E], float (&m)[G], float (&l)[G]) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -FLT_MAX;
    l[g] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[g][e] = 0.f;
  }
}

// A CTA's ending, shared by both kernels (this one and split_k_dim_lanes.cuh):
// s_ml [kWarps][G][2] and s_acc [kWarps][G][acc_ld] hold each warp's
// (m, l, acc) per head of the group. The warps are merged with their max;
// with one split the row is written, else the split's partials are
// published (and merged by the last CTA of the row in a one-pass launch).
__device__ __forceinline__ void finish_cta(float* s_ml, float* s_acc, int G, int64_t acc_ld, int64_t t, int64_t kh,
                                           int split, int splits, int64_t H, int64_t KVH, int64_t D, void* out,
                                           DType ot, float* part_acc, float* part_ml, bool one_pass) {
  __syncthreads();
  const int64_t group = H / KVH;
  for (int64_t idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    const int g = static_cast<int>(idx / D);
    const int64_t i = idx % D;
    float mx = -FLT_MAX;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_ml[(w * G + g) * 2]);
    float lsum = 0.f, a = 0.f;
    for (int w = 0; w < kWarps; ++w) {
      const float mw = s_ml[(w * G + g) * 2];
      if (mw == -FLT_MAX) continue;  // this warp saw no key
      const float c = exp2f(mw - mx);
      lsum += s_ml[(w * G + g) * 2 + 1] * c;
      a += s_acc[(w * G + g) * acc_ld + i] * c;
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
  if (splits > 1 && one_pass) merge_if_last(part_acc, part_ml, splits, t, kh, KVH, H, group, D, out, ot, s_ml, s_acc);
}

// EPL: output elements per lane (D <= 32 * EPL); G: query heads per kv head
// bound; KV_BF16 / Q_BF16: BF16 (else F32) K/V and q. Lane i of a warp
// scores key (tile + i) against every head of the group, then the warp walks
// the tile's keys accumulating V rows, each lane owning EPL consecutive
// output elements (coalesced rows). Needs D % 8 == 0 and 16-byte aligned
// K rows.
template <int EPL, int G, bool KV_BF16, bool Q_BF16, class Keys>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(
    const void* __restrict__ q, const void* __restrict__ k, const void* __restrict__ v, Keys keys, int64_t H,
    int64_t KVH, int64_t D, float scale, int64_t keys_per_split, int splits, void* out, DType ot, float* part_acc,
    float* part_ml, bool one_pass) {
  extern __shared__ float sm[];
  // PDL (pdl.cuh): the next kernel (o_proj's GEMV at decode) may launch
  // and start on its weights; q and the caches come from earlier kernels.
  pdl_launch_dependents();
  pdl_wait();
  if (keys.skipped(blockIdx.x)) return;
  float* s_q = sm;                       // [G][D], pre-scaled
  float* s_ml = s_q + G * D;             // [kWarps][G][2]
  float* s_acc = s_ml + kWarps * G * 2;  // [kWarps][G][32 * EPL]
  const int64_t t = blockIdx.x;
  const int64_t kh = blockIdx.y;
  const int split = static_cast<int>(blockIdx.z);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t group = H / KVH;
  const typename Keys::Row rows = keys.row(t);
  const int64_t n_keys = rows.n_keys();
  const int64_t k0 = split * keys_per_split;
  const int64_t k1 = min(n_keys, k0 + keys_per_split);
  const DType qt = Q_BF16 ? DType::BF16 : DType::F32;
  for (int64_t i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int64_t g = i / D;
    s_q[i] = g < group ? load_as_float(q, qt, (t * H + kh * group + g) * D + i % D) * (scale * kLog2e) : 0.f;
  }
  __syncthreads();

  float acc[G][EPL];
  float m[G], l[G];
  init_softmax_state(acc, m, l);
  const int64_t row_elems = KVH * D;
  const int64_t my0 = static_cast<int64_t>(lane) * EPL;
  for (int64_t tile = k0 + kTile * warp; tile < k1; tile += kTile * kWarps) {
    const int64_t j = tile + lane;
    const bool valid = j < k1;
    const int64_t base = valid ? rows.slot(j) * row_elems + kh * D : 0;
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
          if ((c0 + u) * 8 < D) load8<KV_BF16>(k, base + (c0 + u) * 8, kv[u]);
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
      const float c = exp2f(m[g] - mn);
      p[g] = valid ? exp2f(sc[g] - mn) : 0.f;
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
      // A contiguous row is one multiply away; a table's is a dependent
      // load, so it comes from the lane that scored key kk.
      int64_t vb;
      if constexpr (Keys::kSlotIsKey) vb = (tile + kk) * row_elems + kh * D;
      else vb = __shfl_sync(0xffffffffu, base, kk);
      // D % 8 == 0 and EPL divides 8: a lane's elements are all in the row or none is.
      float vv[EPL];
      if (my0 < D) {
        load_lane<KV_BF16, EPL>(v, vb + my0, vv);
      } else {
#pragma unroll
        for (int e = 0; e < EPL; ++e) vv[e] = 0.f;
      }
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
  finish_cta(s_ml, s_acc, G, 32 * EPL, t, kh, split, splits, H, KVH, D, out, ot, part_acc, part_ml, one_pass);
}

// One block per (t, h): the splits' (m, l, acc) merged with their max.
template <class Keys>
__global__ void combine_kernel(const float* part_acc, const float* part_ml, int splits, int64_t H, int64_t D, void* out,
                               DType ot, Keys keys) {
  pdl_launch_dependents();  // PDL (pdl.cuh): the parts come from the split kernel
  pdl_wait();
  const int64_t th = blockIdx.x;  // t * H + h
  if (keys.skipped(th / H)) return;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    store_from_float(out, ot, th * D + i, merged(part_acc, part_ml, splits, th, D, i));
}

}  // namespace split_k
}  // namespace xqcuda
