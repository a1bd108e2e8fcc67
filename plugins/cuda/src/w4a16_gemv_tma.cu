// w4a16_gemv_tma.cu: the TMA-ring W4A16 GEMV ("v4") for decode batches
// (M <= 8) on the stored "cuda-w4a16-mma" layout (kernels.hpp), sm_90 only.
//
// Why: at M = 1 the weight stream is the whole cost, and the earlier GEMVs
// did not keep enough bytes in flight. The split GEMV (w4a16_gemv.cu, v1/v2)
// paid each short block's start-up and drain; the streaming GEMV
// (w4a16_gemv_stream.cu, v3) held its loads in a register ring and measured
// latency-bound on an H200 (ncu: 34% DRAM throughput, 19% occupancy;
// docs/cuda.md, "W4A16 GEMV for M <= 8"): registers capped the bytes in
// flight at D x 16 B per lane. Here the bytes in flight live in shared
// memory, issued by one thread, so they no longer cost registers.
//
// Design:
// - Within one 128-row n-block all 64-column chunks are contiguous (4 KB
//   each: 8 tiles x 32 lanes x 16 B), and n-block b + 1 follows n-block b,
//   so the flat (n-block, chunk) index f = b * chunks + c is a byte offset
//   f * 4 KB. Block i of the grid takes the range [i P, (i + 1) P) of f
//   (P = per_cta, equal for all blocks: the Stream-K split of Osama et al.,
//   "Stream-K: Work-centric Parallel Decomposition for Dense Matrix-Matrix
//   Multiplication on the GPU", PPoPP 2023, over whole blocks), one
//   contiguous byte range of the weight. One wave: the grid is what fits on
//   the SMs at once.
// - A ring of `stages` slots in shared memory. A slot holds up to kSC = 4
//   chunks of one n-block (16 KB of codes), the scale/zero words of the
//   groups they touch (512 B a group: the layout keeps one n-block's words
//   of one group together) and the x columns they multiply (M rows of
//   kSC x 128 B, padded by 16 B a row so the 8 row reads of one mma B
//   fragment fall in different banks). One producer thread (warp 8, lane 0)
//   fills a slot with 1-D bulk copies, `cp.async.bulk.shared::cluster.global
//   .mbarrier::complete_tx::bytes` (PTX ISA, "Data Movement and Conversion
//   Instructions: cp.async.bulk"): no tensor map, one copy for the codes,
//   one for the scale words, one per x row, completing on the slot's "full"
//   mbarrier; the codes carry an L2 evict_first policy (read once). Eight
//   consumer warps (warp w = 16-row tile w of the n-block) wait on "full",
//   read their 512 B of each chunk (16 B per lane, consecutive lanes:
//   conflict-free), compute, and arrive on the slot's "empty" mbarrier,
//   which the producer waits on before refilling it. A slot never spans two
//   n-blocks, so a consumer's running sum belongs to one tile at a time.
// - Math per chunk as the other GEMVs (w4a16_gemv_common.cuh): the lane's
//   16 bytes are its four m16n8k16 A fragments, x is the B fragment (n =
//   the 8 tokens). Cheaper and more exact dequant: a pair is (nibbles |
//   magic) - zb (LOP3 + HSUB2, exact small integers in bf16/f16), the mma
//   sums code x activation per group in F32, and the group scale is applied
//   in F32 to the group's accumulator (one FFMA per accumulator per group):
//   no HMUL2 and no 16-bit rounding of the dequantized weight.
// - Split n-blocks: every tile of an n-block that two blocks share gets F32
//   partials in one workspace slot per block; the last block to arrive (a
//   per-tile counter that the arriving warp resets) sums the slots in order
//   and writes y (+ bias): deterministic, one launch, no zeroed workspace
//   (as w4a16_gemv_stream.cu).
//
// The copy engine, not the SM, moves the weight, so the consumers only wait
// on an mbarrier that the copy has (ideally) already completed: the bytes in
// flight per SM are up to (stages - 1) x 16 KB per block, not bounded by
// registers. Measured against the fused GEMM and v3 in docs/results.md
// ("W4A16 GEMV v4: TMA ring").
#include "common.cuh"
#include "w4a16_gemv_common.cuh"
#include "w4a16_gemv_tma.hpp"

#include <algorithm>
#include <atomic>
#include <type_traits>

namespace xqcuda {
namespace {
using namespace w4gemv;

constexpr int kSC = 4;               // chunks per ring slot (16 KB of codes)
constexpr int kConsumerWarps = 8;    // one per 16-row tile of the n-block
constexpr int kThreads = (kConsumerWarps + 1) * 32;  // + the producer warp
constexpr int kDefaultStages = 4;
constexpr int kXRowBytes = kSC * 128 + 16;  // one x row of a slot, padded

struct TmaArgs {
  const uint4* qw;
  const uint2* sz;
  const void* x;
  int64_t ldx;
  int M;
  void* y;
  const void* bias;
  DType bias_type;
  float* partial;
  int* counters;
  int64_t N, n_groups, chunks, total, per_cta;
  int64_t unit, ipn, n_items;  // interleaved split: chunks per item, items per n-block, items
  int max_contrib;
  int probe;
  int gs_shift;
  int stages, stage_bytes, sz_off, x_off;
};

// ---- sm_90 PTX: mbarriers and the bulk copy --------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}

__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
#endif
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}

__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
#endif
}

__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t pol = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
#endif
  return pol;
}

// bytes (a multiple of 16) from global src to shared dst (both 16-byte
// aligned), completing `bytes` transactions on mbarrier bar.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
#endif
}

__device__ __forceinline__ void bulk_copy_hint(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar,
                                               uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::
          "r"(dst),
      "l"(src), "r"(bytes), "r"(bar), "l"(pol)
      : "memory");
#endif
}

// ---- the walk over one block's range ----------------------------------------
// Slot s of the walk covers chunks [f, f + n) of n-block nb (chunk c = f -
// nb * chunks), n = min(kSC, range end - f, chunks - c); producer and
// consumers step through the same sequence.
__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

struct Step {
  int64_t nb, c;
  int n;
};
__device__ __forceinline__ Step step_at(const TmaArgs& p, int64_t f, int64_t hi) {
  Step s;
  s.nb = f / p.chunks;
  s.c = f - s.nb * p.chunks;
  s.n = static_cast<int>(min64(min64(kSC, hi - f), p.chunks - s.c));
  return s;
}

// Groups [g0, g1] hold chunks [c, c + n) (clamped: padding columns past K
// may fall past the last group; they multiply zero activations).
__device__ __forceinline__ int64_t group_of(const TmaArgs& p, int64_t col) {
  return min64(col >> p.gs_shift, p.n_groups - 1);
}

// A pair of nibbles (bits 0 and 16 of q) as exact (u - 8 - z) in T.
template <typename T>
__device__ __forceinline__ uint32_t centered_pair(uint32_t q, uint32_t zb) {
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  uint32_t v = (q & 0x000F000Fu) | Magic<T>::kBits;
  T2 r = __hsub2(*reinterpret_cast<T2*>(&v), *reinterpret_cast<T2*>(&zb));
  return *reinterpret_cast<uint32_t*>(&r);
}

// The scale of row gid (lo) or gid + 8 (hi) from a scale word, as F32.
template <typename T>
__device__ __forceinline__ float scale_lo(uint32_t w) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(__ushort_as_half(static_cast<uint16_t>(w & 0xFFFFu)));
  else return __uint_as_float(w << 16);
}
template <typename T>
__device__ __forceinline__ float scale_hi(uint32_t w) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(__ushort_as_half(static_cast<uint16_t>(w >> 16)));
  else return __uint_as_float(w & 0xFFFF0000u);
}

// One chunk of one tile into tot (rows gid, gid + 8 x tokens 2 tig, +1).
// GS scale words per chunk (1: groups >= 64; 2: 32; 4: 16); the k-tiles of
// one group share an accumulator chain that is scaled once, in F32.
template <typename T, int GS>
__device__ __forceinline__ void chunk_mma(float (&tot)[4], const uint4& q4, const uint2 (&s)[GS],
                                          const uint32_t (&b)[8]) {
  constexpr int NC = GS == 1 ? 2 : GS;
  float acc[NC][4];
#pragma unroll
  for (int c = 0; c < NC; ++c)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[c][e] = 0.f;
  const uint32_t words[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
  for (int kt = 0; kt < 4; ++kt) {
    const uint2 sw = s[GS == 1 ? 0 : GS == 2 ? kt >> 1 : kt];
    const uint32_t zA = __byte_perm(sw.y, 0, 0x1010), zB = __byte_perm(sw.y, 0, 0x3232);
    const uint32_t q = words[kt];
    const uint32_t af[4] = {centered_pair<T>(q, zA), centered_pair<T>(q >> 4, zB), centered_pair<T>(q >> 8, zA),
                            centered_pair<T>(q >> 12, zB)};
    mma_16816<T>(acc[GS == 1 ? (kt & 1) : GS == 2 ? (kt >> 1) : kt], af, b[2 * kt], b[2 * kt + 1]);
  }
  if constexpr (GS == 1) {
    const float sA = scale_lo<T>(s[0].x), sB = scale_hi<T>(s[0].x);
#pragma unroll
    for (int e = 0; e < 4; ++e) tot[e] = fmaf(acc[0][e] + acc[1][e], e < 2 ? sA : sB, tot[e]);
  } else {
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const float sA = scale_lo<T>(s[c].x), sB = scale_hi<T>(s[c].x);
#pragma unroll
      for (int e = 0; e < 4; ++e) tot[e] = fmaf(acc[c][e], e < 2 ? sA : sB, tot[e]);
    }
  }
}

template <typename T>
__device__ __forceinline__ void store_y(const TmaArgs& p, int m, int64_t n, float v) {
  if (p.bias) v += load_as_float(p.bias, p.bias_type, n);
  store_from_float(p.y, std::is_same_v<T, __half> ? DType::F16 : DType::BF16, m * p.N + n, v);
}

// The ranges of f one block streams, in order. Contiguous split (unit = 0):
// the one range [b P, (b + 1) P). Interleaved split (unit = U > 0): items
// of U chunks of one n-block (item j: n-block j / ipn, chunks [(j % ipn) U,
// +U) clipped to the n-block, ipn = items per n-block), block b taking items
// b, b + grid, b + 2 grid, ...: the blocks running at one time read one
// window of neighbouring items.
__device__ __forceinline__ bool segment(const TmaArgs& p, int k, int64_t* flo, int64_t* fhi, int64_t* item) {
  if (p.unit == 0) {
    if (k > 0) return false;
    *flo = static_cast<int64_t>(blockIdx.x) * p.per_cta;
    *fhi = min64(*flo + p.per_cta, p.total);
    *item = blockIdx.x;
    return *flo < *fhi;
  }
  const int64_t j = blockIdx.x + static_cast<int64_t>(k) * gridDim.x;
  if (j >= p.n_items) return false;
  const int64_t nb = j / p.ipn, c0 = (j - nb * p.ipn) * p.unit;
  *flo = nb * p.chunks + c0;
  *fhi = nb * p.chunks + min64(c0 + p.unit, p.chunks);
  *item = j;
  return true;
}

// Tile t = nb * 8 + warp, chunks [cs, ce) of it are in tot: write y, or this
// block's partial slot and, if this is the tile's last contributor to
// arrive, the sum of all slots in slot order.
template <typename T>
__device__ __forceinline__ void flush_tile(const TmaArgs& p, int64_t nb, int warp, int64_t cs, int64_t ce,
                                           int64_t item, const float (&tot)[4], int lane) {
  const int gid = lane >> 2, tig = lane & 3;
  const int64_t t = nb * 8 + warp;
  if (cs == 0 && ce == p.chunks) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t n = t * 16 + gid + (e >= 2 ? 8 : 0);
      const int m = 2 * tig + (e & 1);
      if (n < p.N && m < p.M) store_y<T>(p, m, n, tot[e]);
    }
    return;
  }
  int64_t slot_idx;
  int n_contrib;
  if (p.unit == 0) {
    const int64_t first = (nb * p.chunks) / p.per_cta;
    n_contrib = static_cast<int>((nb * p.chunks + p.chunks - 1) / p.per_cta - first + 1);
    slot_idx = item - first;
  } else {
    n_contrib = static_cast<int>(p.ipn);
    slot_idx = cs / p.unit;
  }
  float* slot = p.partial + (t * p.max_contrib + slot_idx) * p.M * 16;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int m = 2 * tig + (e & 1);
    if (m < p.M) slot[m * 16 + gid + (e >= 2 ? 8 : 0)] = tot[e];
  }
  __threadfence();  // this warp's partials are visible before its arrival is counted
  __syncwarp();
  int last = 0;
  if (lane == 0) {
    last = atomicAdd(p.counters + t, 1) == n_contrib - 1;
    if (last) p.counters[t] = 0;  // ready for the next launch
  }
  last = __shfl_sync(0xffffffffu, last, 0);
  if (!last) return;
  __threadfence();
  const float* slots = p.partial + t * p.max_contrib * p.M * 16;
  for (int i = lane; i < p.M * 16; i += 32) {
    const int64_t n = t * 16 + (i & 15);
    if (n >= p.N) continue;
    float v = 0.f;
    for (int j = 0; j < n_contrib; ++j) v += __ldcg(slots + j * p.M * 16 + i);
    store_y<T>(p, i >> 4, n, v);
  }
}

template <typename T, int GS>
__global__ void __launch_bounds__(kThreads, 3) k_w4_gemv_tma(const TmaArgs p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // sm_90 only (the bulk copies): the host launches it nowhere else (w4_gemv_tma_supported)
#endif
  extern __shared__ __align__(128) unsigned char smem[];
  // [stages] full barriers, [stages] empty barriers, then the slots (128-aligned).
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem);
  unsigned char* ring = smem + ((2 * p.stages * 8 + 127) & ~127);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int64_t flo, fhi, item;
  if (!segment(p, 0, &flo, &fhi, &item)) return;  // whole block: no barrier is reached
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      mbar_init(smem_u32(bars + s), 1);                            // full: the producer's expect_tx
      mbar_init(smem_u32(bars + p.stages + s), kConsumerWarps);  // empty: one arrival per consumer warp
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warp == kConsumerWarps) {  // producer
    if (lane != 0) return;
    const uint64_t pol = evict_first_policy();
    int i = 0;
    for (int k = 0; segment(p, k, &flo, &fhi, &item); ++k) {
      for (int64_t f = flo; f < fhi; ++i) {
        const Step st = step_at(p, f, fhi);
        const int slot = i % p.stages;
        if (i >= p.stages) mbar_wait(smem_u32(bars + p.stages + slot), ((i / p.stages) & 1) ^ 1);
        const int64_t g0 = group_of(p, st.c * 64), g1 = group_of(p, (st.c + st.n) * 64 - 1);
        const uint32_t code_bytes = st.n * 4096u, sz_bytes = static_cast<uint32_t>(g1 - g0 + 1) * 512u,
                       x_bytes = st.n * 128u;
        const uint32_t full = smem_u32(bars + slot);
        mbar_arrive_expect_tx(full, code_bytes + sz_bytes + p.M * x_bytes);
        unsigned char* dst = ring + static_cast<int64_t>(slot) * p.stage_bytes;
        bulk_copy_hint(smem_u32(dst), p.qw + f * 256, code_bytes, full, pol);
        bulk_copy(smem_u32(dst + p.sz_off), p.sz + (st.nb * p.n_groups + g0) * 64, sz_bytes, full);
        for (int m = 0; m < p.M; ++m)
          bulk_copy(smem_u32(dst + p.x_off + m * kXRowBytes),
                    static_cast<const T*>(p.x) + m * p.ldx + st.c * 64, x_bytes, full);
        f += st.n;
      }
    }
    return;
  }

  // Consumers: warp w = tile w of each n-block.
  const int gid = lane >> 2, tig = lane & 3;
  const int xrow = min(gid, p.M - 1);
  float tot[4] = {0.f, 0.f, 0.f, 0.f};
  int i = 0;
  for (int k = 0; segment(p, k, &flo, &fhi, &item); ++k) {
    int64_t cs = flo % p.chunks;  // first chunk of the current n-block in this range
    for (int64_t f = flo; f < fhi; ++i) {
      const Step st = step_at(p, f, fhi);
      const int slot = i % p.stages;
      mbar_wait(smem_u32(bars + slot), (i / p.stages) & 1);
      if (!p.probe) {
        const unsigned char* src = ring + static_cast<int64_t>(slot) * p.stage_bytes;
        const uint4* qs = reinterpret_cast<const uint4*>(src) + warp * 32 + lane;
        const uint2* ss = reinterpret_cast<const uint2*>(src + p.sz_off) + warp * 8 + gid;
        const unsigned char* xs = src + p.x_off + xrow * kXRowBytes + 4 * tig;
        const int64_t g0 = group_of(p, st.c * 64);
#pragma unroll
        for (int ci = 0; ci < kSC; ++ci) {
          if (ci < st.n) {
            const uint4 q4 = qs[ci * 256];
            uint2 s[GS];
#pragma unroll
            for (int g = 0; g < GS; ++g) s[g] = ss[(group_of(p, (st.c + ci) * 64 + g * (64 / GS)) - g0) * 64];
            // B fragment of k-tile kt: x[16 kt + 2 tig, +1] and x[16 kt + 8 + 2 tig, +1], 16 bytes apart.
            uint32_t b[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) b[j] = *reinterpret_cast<const uint32_t*>(xs + ci * 128 + 16 * j);
            chunk_mma<T, GS>(tot, q4, s, b);
          }
        }
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_u32(bars + p.stages + slot));
      f += st.n;
      if (st.c + st.n == p.chunks || f == fhi) {
        flush_tile<T>(p, st.nb, warp, cs, st.c + st.n, item, tot, lane);
#pragma unroll
        for (int e = 0; e < 4; ++e) tot[e] = 0.f;
        cs = 0;
      }
    }
  }
}

int scale_words_per_chunk(const W4Layout& L) { return L.gs_shift >= 6 ? 1 : 64 >> L.gs_shift; }

template <typename T, int GS>
void* kernel_ptr() {
  return reinterpret_cast<void*>(&k_w4_gemv_tma<T, GS>);
}

void* kernel_for(bool is_f16, int gs) {
  if (is_f16) return gs == 1 ? kernel_ptr<__half, 1>() : gs == 2 ? kernel_ptr<__half, 2>() : kernel_ptr<__half, 4>();
  return gs == 1 ? kernel_ptr<__nv_bfloat16, 1>() : gs == 2 ? kernel_ptr<__nv_bfloat16, 2>()
                                                            : kernel_ptr<__nv_bfloat16, 4>();
}

// Raises each instantiation's dynamic shared-memory limit once (to the most
// a block may have), so plans of any size launch.
cudaError_t allow_smem(bool is_f16, int gs) {
  static std::atomic<bool> done[2][3];
  std::atomic<bool>& d = done[is_f16 ? 1 : 0][gs == 1 ? 0 : gs == 2 ? 1 : 2];
  if (d.load(std::memory_order_acquire)) return cudaSuccess;
  int dev = 0, cap = 0;
  cudaGetDevice(&dev);
  if (cudaDeviceGetAttribute(&cap, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();
    cap = 48 << 10;
  }
  const cudaError_t e = cudaFuncSetAttribute(kernel_for(is_f16, gs), cudaFuncAttributeMaxDynamicSharedMemorySize, cap);
  if (e == cudaSuccess) d.store(true, std::memory_order_release);
  return e;
}

struct Occupancy {
  std::atomic<int> smem{-1}, blocks{0};
};

int resident_blocks_per_sm(bool is_f16, int gs, int smem_bytes) {
  static Occupancy cache[2][3];
  Occupancy& c = cache[is_f16 ? 1 : 0][gs == 1 ? 0 : gs == 2 ? 1 : 2];
  if (c.smem.load(std::memory_order_acquire) == smem_bytes) return c.blocks.load(std::memory_order_relaxed);
  const void* fn = kernel_for(is_f16, gs);
  int n = 0;
  if (allow_smem(is_f16, gs) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, kThreads, static_cast<size_t>(smem_bytes)) !=
          cudaSuccess) {
    cudaGetLastError();
    n = 0;
  }
  n = std::max(n, 1);
  c.blocks.store(n, std::memory_order_relaxed);
  c.smem.store(smem_bytes, std::memory_order_release);
  return n;
}

}  // namespace

bool w4_gemv_tma_supported(int cc_major) { return cc_major == 9; }

W4GemvTmaPlan w4_gemv_tma_plan(const W4Layout& L, int64_t M, bool is_f16, int sm_count, int stages,
                               int max_blocks_per_sm, int unit) {
  W4GemvTmaPlan plan;
  plan.stages = stages > 0 ? std::min(stages, 16) : kDefaultStages;
  // Scale-word groups one slot can touch: W = kSC x 64 columns meet at most
  // (W - 1) / G + 2 groups of G columns.
  const int64_t max_groups =
      L.gs_shift >= 30 ? 1 : std::min<int64_t>(L.n_groups, ((kSC * 64 - 1) >> L.gs_shift) + 2);
  plan.x_off = static_cast<int>(kSC * 4096 + max_groups * 512);
  plan.stage_bytes = static_cast<int>(plan.x_off + ((M * kXRowBytes + 127) & ~127LL));
  plan.smem_bytes = ((2 * plan.stages * 8 + 127) & ~127) + plan.stages * plan.stage_bytes;
  int per_sm = resident_blocks_per_sm(is_f16, scale_words_per_chunk(L), plan.smem_bytes);
  if (max_blocks_per_sm > 0) per_sm = std::min(per_sm, max_blocks_per_sm);
  const int64_t blocks = static_cast<int64_t>(std::max(sm_count, 1)) * per_sm;
  const int64_t total = L.n_blocks * L.chunks;
  const int64_t tiles = L.n_blocks * kConsumerWarps;
  bool shared;
  if (unit > 0) {
    plan.unit = unit;
    const int64_t ipn = (L.chunks + unit - 1) / unit;
    plan.blocks = static_cast<int>(std::min<int64_t>(blocks, L.n_blocks * ipn));
    plan.per_cta = (L.n_blocks * ipn + plan.blocks - 1) / plan.blocks;  // items, at most
    plan.max_contrib = static_cast<int>(ipn);
    shared = ipn > 1;
  } else {
    plan.per_cta = std::max<int64_t>(1, (total + blocks - 1) / blocks);
    plan.blocks = static_cast<int>((total + plan.per_cta - 1) / plan.per_cta);
    // An n-block's chunks [b C, b C + C) meet at most ceil((C - 1) / P) + 1 ranges.
    plan.max_contrib = static_cast<int>((L.chunks - 1 + plan.per_cta - 1) / plan.per_cta + 1);
    // Ranges that are whole multiples of an n-block's chunks never split one.
    shared = plan.per_cta % L.chunks != 0;
  }
  plan.workspace_floats = shared ? tiles * plan.max_contrib * M * 16 : 0;
  plan.counters = shared ? tiles : 0;
  return plan;
}

cudaError_t w4_gemv_tma(const W4Layout& L, const W4GemvTmaPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                        const void* x, int64_t ldx, int64_t M, void* y, const void* bias, DType bias_type,
                        float* partial, int* counters, cudaStream_t stream) {
  if (M < 1 || M > kW4GemvMaxM || plan.blocks < 1 || plan.per_cta < 1 || plan.stages < 1 || L.gs_shift < 4)
    return cudaErrorInvalidValue;
  if (plan.counters > 0 && (!partial || !counters)) return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(x) & 15) != 0 || (ldx & 7) != 0) return cudaErrorInvalidValue;
  TmaArgs a{};
  a.qw = qw;
  a.sz = sz;
  a.x = x;
  a.ldx = ldx;
  a.M = static_cast<int>(M);
  a.y = y;
  a.bias = bias;
  a.bias_type = bias_type;
  a.partial = partial;
  a.counters = counters;
  a.N = L.N;
  a.n_groups = L.n_groups;
  a.chunks = L.chunks;
  a.total = L.n_blocks * L.chunks;
  a.per_cta = plan.per_cta;
  a.unit = plan.unit;
  a.ipn = plan.unit > 0 ? (L.chunks + plan.unit - 1) / plan.unit : 0;
  a.n_items = a.ipn * L.n_blocks;
  a.probe = plan.probe;
  a.max_contrib = plan.max_contrib;
  a.gs_shift = L.gs_shift;
  a.stages = plan.stages;
  a.stage_bytes = plan.stage_bytes;
  a.sz_off = kSC * 4096;
  a.x_off = plan.x_off;
  const int gs = scale_words_per_chunk(L);
  const void* fn = kernel_for(is_f16, gs);
  if (cudaError_t e = allow_smem(is_f16, gs); e != cudaSuccess) return e;
  void* args[] = {&a};
  return cudaLaunchKernel(fn, dim3(static_cast<unsigned>(plan.blocks)), dim3(kThreads), args,
                          static_cast<size_t>(plan.smem_bytes), stream);
}

}  // namespace xqcuda
