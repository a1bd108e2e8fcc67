// w4a16_gemv_common.cuh: device helpers the W4A16 GEMVs share
// (w4a16_gemv.cu, w4a16_gemv_stream.cu, w4a16_gemv_tma.cu): int4 -> 16-bit
// dequantization of a pair, one m16n8k16 mma, a streaming 16-byte load, the
// output store and the split tiles' in-launch sum.
#pragma once

#include "common.cuh"

#include <type_traits>

namespace xqcuda {
namespace w4gemv {

template <typename T>
struct Magic;
template <>
struct Magic<__nv_bfloat16> {
  static constexpr uint32_t kBits = 0x43004300u;  // bf16 128.0 in both halves
};
template <>
struct Magic<__half> {
  static constexpr uint32_t kBits = 0x64006400u;  // f16 1024.0 in both halves
};

// Nibbles at bits 0 and 16 of q, dequantized to a pair of T.
template <typename T>
__device__ __forceinline__ uint32_t dequant_pair(uint32_t q, uint32_t zb, uint32_t s) {
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  uint32_t v = (q & 0x000F000Fu) | Magic<T>::kBits;
  T2 r = __hmul2(__hsub2(*reinterpret_cast<T2*>(&v), *reinterpret_cast<T2*>(&zb)), *reinterpret_cast<T2*>(&s));
  return *reinterpret_cast<uint32_t*>(&r);
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Weights are read once: stream them past L1.
__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// y[m, n] = v (+ bias[n]) in T, for the GEMVs' argument structs (fields y,
// bias, bias_type, N).
template <typename T, typename Args>
__device__ __forceinline__ void store_y(const Args& p, int m, int64_t n, float v) {
  if (p.bias) v += load_as_float(p.bias, p.bias_type, n);
  store_from_float(p.y, std::is_same_v<T, __half> ? DType::F16 : DType::BF16, m * p.N + n, v);
}

// The end of one contributor's share of 16-row tile t in a split GEMV (the
// streaming v3 splits per warp, the TMA-ring v4 per block): a holds the
// tile's chunks [cs, ce) for NA / 4 token tiles (tile j: rows gid (a[4 j],
// a[4 j + 1]) and gid + 8 (a[4 j + 2], a[4 j + 3]), tokens 8 j + 2 tig and
// 8 j + 2 tig + 1). A contributor that covered the whole tile
// writes y. Otherwise a goes to its workspace slot, and the tile's last
// contributor to arrive (a per-tile counter it resets for the next launch)
// sums the slots in slot order and writes y: deterministic, one launch, no
// zeroed workspace. Contributors own the flat ranges [i per, (i + 1) per) of
// (tile-group, chunk) units; the tile's chunks are units [base, base +
// chunks), so its contributors are base / per .. (base + chunks - 1) / per.
// Args: the fields of store_y plus M, chunks, partial, counters, max_contrib.
// How a split tile's contributor publishes its partials before counting its
// arrival. kFences: __threadfence() before the counter's atomicAdd and again
// in the last arrival before it reads the others' slots (v1-v3). kAcqRel: the
// warp's stores, __syncwarp (which orders the lanes' memory operations), then
// one atom.add.acq_rel.gpu by lane 0: its release half publishes what the warp
// wrote (release is cumulative over what the warp barrier ordered before it),
// its acquire half orders the last arrival's reads of the other slots after
// their writers' releases (PTX ISA, "Memory Consistency Model", release and
// acquire patterns). Two full fences per contributor become one ordered
// atomic; measured on the H200 as 9% of the TMA-ring GEMV's time at M = 1 on
// 4096 x 4096 (docs/cuda.md, "W4A16 GEMV v4: release-ordered flush").
enum class SplitFlush { kFences, kAcqRel };

__device__ __forceinline__ int atomic_add_acq_rel_gpu(int* counter, int v) {
  int old;
  asm volatile("atom.add.acq_rel.gpu.s32 %0, [%1], %2;\n" : "=r"(old) : "l"(counter), "r"(v) : "memory");
  return old;
}

template <typename T, typename Args, SplitFlush kFlush = SplitFlush::kFences, int NA>
__device__ __forceinline__ void flush_split_tile(const Args& p, int64_t t, int64_t base, int64_t per,
                                                 int64_t contributor, int64_t cs, int64_t ce, const float (&a)[NA],
                                                 int lane) {
  static_assert(NA % 4 == 0, "four values a token tile");
  const int gid = lane >> 2, tig = lane & 3;
  if (cs == 0 && ce == p.chunks) {
#pragma unroll
    for (int e = 0; e < NA; ++e) {
      const int64_t n = t * 16 + gid + ((e & 3) >= 2 ? 8 : 0);
      const int m = (e >> 2) * 8 + 2 * tig + (e & 1);
      if (n < p.N && m < p.M) store_y<T>(p, m, n, a[e]);
    }
    return;
  }
  const int64_t first = base / per;
  const int n_contrib = static_cast<int>((base + p.chunks - 1) / per - first + 1);
  float* slot = p.partial + (t * p.max_contrib + (contributor - first)) * p.M * 16;
#pragma unroll
  for (int e = 0; e < NA; ++e) {
    const int m = (e >> 2) * 8 + 2 * tig + (e & 1);
    if (m < p.M) slot[m * 16 + gid + ((e & 3) >= 2 ? 8 : 0)] = a[e];
  }
  if constexpr (kFlush == SplitFlush::kFences) __threadfence();  // partials visible before the arrival counts
  __syncwarp();
  int last = 0;
  if (lane == 0) {
    const int before = kFlush == SplitFlush::kAcqRel ? atomic_add_acq_rel_gpu(p.counters + t, 1)
                                                     : atomicAdd(p.counters + t, 1);
    last = before == n_contrib - 1;
    if (last) p.counters[t] = 0;  // ready for the next launch
  }
  last = __shfl_sync(0xffffffffu, last, 0);
  if (!last) return;
  if constexpr (kFlush == SplitFlush::kFences) {
    __threadfence();
  } else {
    __syncwarp();  // lane 0's acquire before every lane's reads of the other slots
  }
  const float* slots = p.partial + t * p.max_contrib * p.M * 16;
  for (int i = lane; i < p.M * 16; i += 32) {
    const int64_t n = t * 16 + (i & 15);
    if (n >= p.N) continue;
    float v = 0.f;
    for (int j = 0; j < n_contrib; ++j) v += __ldcg(slots + j * p.M * 16 + i);
    store_y<T>(p, i >> 4, n, v);
  }
}

}  // namespace w4gemv
}  // namespace xqcuda
