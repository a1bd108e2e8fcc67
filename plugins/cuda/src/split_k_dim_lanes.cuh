// split_k_dim_lanes.cuh: the split-K decode attention kernel for BF16 K/V
// with a key's head dimension spread over lanes, the "dim-lanes" kernel.
// Same CTA shape, splits, key lookup (Keys) and endings as the key-per-lane
// kernel of split_k_attention.cuh; only how a warp walks its keys differs.
//
// Why a second kernel: the key-per-lane kernel gives each lane a whole key
// (lane i scores key i over all of D, then the warp walks the tile's V rows
// one key at a time), so a warp's 32-key tile is a chain of ~3,600
// dependent instructions; ncu on an H200 measured one warp per scheduler
// issuing every 7.1 cycles, a 128-key row taking ~9.5 us (docs/cuda.md,
// "Where a short decode call's time goes"). Here, as in FlashInfer's decode
// kernels (include/flashinfer/attention/decode.cuh: a key's head dimension
// over bdx threads, vec_size elements each), a key's D elements sit in D / 8
// lanes, 8 BF16 (one 16-byte load) each, so a warp scores 32 / (D / 8) keys
// per step: per lane 8 FMAs per head and log2(D / 8) shuffles to sum a
// score, and the same lanes own those 8 elements of the V rows, so the
// probabilities need no broadcast. A tile's K and V rows are all loaded
// before any is used (2 * STEPS 16-byte loads in flight per lane).
#pragma once

#include "split_k_attention.cuh"

namespace xqcuda {
namespace split_k {

// Two sizes of the kernel, by registers. A warp tile's K and V chunks (8
// registers per step each) and scores (G per step) sit beside q and the
// accumulators (8 G floats each). Wide: 8 steps (16 keys at D 128) in
// flight, registers for 3 CTAs per SM at groups up to 4 (2 above, with 4
// steps). Narrow (groups up to 4 only): 4 steps, capped at 128 registers for
// 4 CTAs per SM (a few spilled at group 4), for launches past one wave of
// the wide kernel (split_k_launch.cuh). Measured on an H200, docs/cuda.md.
template <int G>
struct DimLanesWide {
  static constexpr int kSteps = G <= 4 ? 8 : 4;
  static constexpr int kMinCtasPerSm = G <= 4 ? 3 : 2;
};
struct DimLanesNarrow {
  static constexpr int kSteps = 4;
  static constexpr int kMinCtasPerSm = 4;
};

// D: 64 or 128 (lanes per key 8 or 16); G: query heads per kv head bound
// (<= 8); Q_BF16: q is BF16 (ATTENTION) rather than F32 (PAGED_ATTENTION);
// STEPS and MIN_CTAS: a size above.
template <int D, int G, bool Q_BF16, class Keys, int STEPS, int MIN_CTAS>
__global__ void __launch_bounds__(kWarps * 32, MIN_CTAS) dim_lanes_kernel(
    const void* __restrict__ q, const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v, Keys keys,
    int64_t H, int64_t KVH, float scale, int64_t keys_per_split, int splits, void* out, DType ot, float* part_acc,
    float* part_ml, bool one_pass) {
  constexpr int kLanesPerKey = D / 8;
  constexpr int kKeysPerStep = 32 / kLanesPerKey;
  constexpr int kSteps = STEPS;
  constexpr int kTileKeys = kKeysPerStep * kSteps;
  extern __shared__ float sm[];
  // PDL (pdl.cuh): the next kernel (o_proj's GEMV at decode) may launch
  // and start on its weights.
  pdl_launch_dependents();
  float* s_ml = sm;                      // [kWarps][G][2]
  float* s_acc = s_ml + kWarps * G * 2;  // [kWarps][G][D]
  const int64_t t = blockIdx.x;
  const int64_t kh = blockIdx.y;
  const int split = static_cast<int>(blockIdx.z);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int part = lane % kLanesPerKey;  // this lane's 8 elements of D
  const int key_in_step = lane / kLanesPerKey;
  const int64_t group = H / KVH;
  // The row's position and block table, and the slots of this warp's first
  // tile, before the wait: the host uploaded them ahead of the step's first
  // kernel, so only q and the caches (ROPE_KV's writes) need the previous
  // kernel done. At batch 1 a call is a chain of a few dependent round
  // trips (Nsight Compute on an H200: 11.0 us a call at 128-192 keys, run
  // alone); these two now overlap the previous kernel. Measured only with
  // the session's other changes, in the step's time (docs/results.md,
  // "Session twenty-nine").
  const typename Keys::Row rows = keys.row(t);
  const int64_t k0 = split * keys_per_split;
  const int64_t k1 = min(rows.n_keys(), k0 + keys_per_split);
  const int64_t first_tile = k0 + kTileKeys * warp;
  int32_t slot[kSteps];
  if (first_tile < k1) rows.template slots<kSteps, kKeysPerStep>(first_tile + key_in_step, k1, slot);
  pdl_wait();
  if (keys.skipped(blockIdx.x)) return;  // the prefill attention kernel's answer (same step)

  // This lane's 8 elements of each head's q, pre-scaled (base-2 scores).
  float qr[G][8];
  const DType qt = Q_BF16 ? DType::BF16 : DType::F32;
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int i = 0; i < 8; ++i)
      qr[g][i] = g < group ? load_as_float(q, qt, (t * H + kh * group + g) * D + part * 8 + i) * (scale * kLog2e) : 0.f;

  float acc[G][8];
  float m[G], l[G];
  init_softmax_state(acc, m, l);
  const int64_t row_elems = KVH * D;
  const int64_t col = kh * D + part * 8;
  for (int64_t tile = first_tile; tile < k1; tile += kTileKeys * kWarps) {
    const int64_t first = tile + key_in_step;  // this lane's key at step s: first + s * kKeysPerStep
    if (tile != first_tile) rows.template slots<kSteps, kKeysPerStep>(first, k1, slot);
    bool ok[kSteps];
    uint4 kc[kSteps], vc[kSteps];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      ok[s] = first + s * kKeysPerStep < k1;
      const int64_t at = static_cast<int64_t>(slot[s]) * row_elems + col;
      kc[s] = ok[s] ? *reinterpret_cast<const uint4*>(k + at) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int64_t at = static_cast<int64_t>(slot[s]) * row_elems + col;
      vc[s] = ok[s] ? *reinterpret_cast<const uint4*>(v + at) : make_uint4(0, 0, 0, 0);
    }

    // Scores: 8 products per head in each lane, summed over the key's lanes
    // (an xor butterfly leaves the same sum in all of them).
    float sc[kSteps][G];
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      float kf[8];
      bf16x8_to_float(kc[s], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) d += qr[g][i] * kf[i];
        sc[s][g] = d;
      }
    }
#pragma unroll
    for (int s = 0; s < kSteps; ++s)
#pragma unroll
      for (int g = 0; g < G; ++g)
#pragma unroll
        for (int o = kLanesPerKey / 2; o > 0; o >>= 1) sc[s][g] += __shfl_xor_sync(0xffffffffu, sc[s][g], o);

    // Online softmax over the tile; sc becomes the probabilities. The
    // tile's max and sum combine the warp's keys of a step (lanes
    // kLanesPerKey apart).
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mt = -FLT_MAX;
#pragma unroll
      for (int s = 0; s < kSteps; ++s)
        if (ok[s]) mt = fmaxf(mt, sc[s][g]);
#pragma unroll
      for (int o = kLanesPerKey; o < 32; o <<= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
      const float mn = fmaxf(m[g], mt);
      const float c = exp2f(m[g] - mn);
      float ps = 0.f;
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        sc[s][g] = ok[s] ? exp2f(sc[s][g] - mn) : 0.f;
        ps += sc[s][g];
      }
#pragma unroll
      for (int o = kLanesPerKey; o < 32; o <<= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      l[g] = l[g] * c + ps;
      m[g] = mn;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= c;
    }
    // P . V: each lane adds its keys' rows, its 8 elements.
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      float vf[8];
      bf16x8_to_float(vc[s], vf);
#pragma unroll
      for (int g = 0; g < G; ++g)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] += sc[s][g] * vf[e];
    }
  }

  // The warp's keys of a step sat in different lanes: sum their
  // accumulators (every lane has the same m and l), then the warps merge.
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int e = 0; e < 8; ++e)
#pragma unroll
      for (int o = kLanesPerKey; o < 32; o <<= 1) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) {
      s_ml[(warp * G + g) * 2] = m[g];
      s_ml[(warp * G + g) * 2 + 1] = l[g];
    }
    if (key_in_step == 0) {
#pragma unroll
      for (int e = 0; e < 8; ++e) s_acc[(warp * G + g) * D + part * 8 + e] = acc[g][e];
    }
  }
  finish_cta(s_ml, s_acc, G, D, t, kh, split, splits, H, KVH, D, out, ot, part_acc, part_ml, one_pass);
}

}  // namespace split_k
}  // namespace xqcuda
