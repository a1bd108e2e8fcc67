// w4a16_gemv_tma.cu: the TMA-ring W4A16 GEMV ("v4") for decode batches
// (M <= 8) on the stored "cuda-w4a16-mma" layout (kernels.hpp), sm_90 only.
//
// Why: at M = 1 the weight stream is the whole cost, and the earlier GEMVs
// did not keep enough bytes in flight. The split GEMV (w4a16_gemv.cu, v1/v2)
// paid each short block's start-up and drain; the streaming GEMV
// (w4a16_gemv_stream.cu, v3) holds its loads in a register ring, so
// registers cap its bytes in flight (D x 16 B per lane); it streams 36% of
// the copy bandwidth at M = 1 on 8192x28672 (docs/cuda.md, "W4A16 GEMV v4").
// Here the bytes in flight live in shared memory, issued by one thread with
// the copy engine, so they cost no registers.
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
//   the SMs at once (2 blocks per SM: <= 96 registers, __launch_bounds__).
// - A ring of `stages` slots in shared memory (the default: the deepest ring
//   of <= 4 that keeps 2 blocks on an SM; 3 at M = 1, 2 at M = 8). A slot
//   holds up to kSC = 8 chunks of one n-block (32 KB of codes), the
//   scale/zero words of the groups they touch (512 B a group: the layout
//   keeps one n-block's words of one group together), the x sums of the
//   chunks' segments (below) and the x columns they multiply (M rows of
//   kSC x 128 B, padded by 16 B a row so the 8 rows one ldmatrix phase reads
//   fall in different banks). One producer thread (warp 8, lane 0) fills a
//   slot with 1-D bulk copies, `cp.async.bulk.shared::cluster.global
//   .mbarrier::complete_tx::bytes` (PTX ISA, "Data Movement and Conversion
//   Instructions: cp.async.bulk"): no tensor map, one copy for the codes,
//   one for the scale words, one per x row, completing on the slot's "full"
//   mbarrier; the codes carry an L2 evict_first policy (read once). The sum
//   warp (warp 9) waits on "full", writes the slot's x sums and arrives on
//   "ready". Eight consumer warps (warp w = 16-row tile w of the n-block)
//   wait on "ready" ("full" where the sums are not used), read their 512 B
//   of each chunk (16 B per lane, consecutive lanes: conflict-free) and x's
//   B fragments (two ldmatrix.x4 a chunk), compute, and arrive on the slot's
//   "empty" mbarrier, which the producer waits on before refilling it. A
//   slot never spans two n-blocks, so a consumer's running sum belongs to
//   one tile at a time.
// - Math per chunk as the other GEMVs (w4a16_gemv_common.cuh): the lane's
//   16 bytes are its four m16n8k16 A fragments, x is the B fragment (n =
//   the 8 tokens). A pair is (nibbles | magic) = magic + u, exact in
//   bf16/f16: one LOP3 (the magic in a register: with two immediates the
//   compiler emitted an AND and an OR). The zero point stays out of the
//   inner loop: sum_k (u_k - 8 - z) x_k = sum_k (magic + u_k) x_k - zb
//   sum_k x_k, zb = magic + 8 + z (the scale word's high half), so the mma
//   sums (magic + u) x per group segment in F32 and the fold is tot += s
//   (acc - zb sx) in F32 (two FFMA per accumulator per segment). sx, the
//   segment's sums of x for each token, comes from the sum warp: one mma
//   with A = ones per k-tile (exact products, F32 sums) for all 8 tokens, 8
//   chunks a slot, four chains interleaved. The cancellation costs about 4
//   bits of F32 for bf16 (magic 128) and 7 for f16 (magic 1024): errors stay
//   at or below the fused GEMM's in the harness. With 16-column groups (4
//   scale words a chunk) the fold would cost 4 x 2 FFMA + conversions a
//   chunk, more than it saves, so there the pairs are centred in 16 bits,
//   (magic + u) - zb with one HSUB2 (exact), and the fold is tot += s acc.
// - Programmatic Dependent Launch (pdl.cuh): the producer issues the first
//   round of slots' code and scale copies (constants) before
//   griddepcontrol.wait, and their x copies after it, so a GEMV after a
//   norm, SWIGLU or attention kernel starts pulling its weights while that
//   kernel finishes; consumers wait too before anything the flush touches
//   (the sum warp reads nothing before x's "full").
// - Split n-blocks: every tile of an n-block that two blocks share gets F32
//   partials in one workspace slot per block; the last block to arrive (a
//   per-tile counter that the arriving warp resets) sums the slots in order
//   and writes y (+ bias): deterministic, one launch, no zeroed workspace
//   (as w4a16_gemv_stream.cu).
// - N-block parts (session thirty-one; the plan picks them or stream-K by a
//   cost model): where there are no more n-blocks than blocks that fit at
//   once, each n-block is cut into s equal parts, a block each, so a block
//   flushes once (stream-K ranges cross up to two n-block boundaries, and a
//   flush through global memory costs ~1.8 us at the end of a call: the
//   stores, the acquire-release counter and the last block's reads, one
//   round trip to L2 each). With s = 1 nothing is shared (gate|up of
//   Llama-3.1-8B: 224 n-blocks); with s <= 8 the parts form a thread-block
//   cluster and sum each tile through distributed shared memory
//   (flush_tile_cluster); else through the workspace as above. Measured with
//   per-block timestamps (-DXQ_W4T_TRACE) and in the engine: docs/cuda.md,
//   "W4A16 GEMV v4: n-block parts".
// - Token tiles (session thirty-two): the mma's n is 8 tokens; 9 <= M <= 16
//   runs a second instantiation with two tiles (NT = 2), which makes each
//   k-tile's A fragments once and feeds both tiles' mma, keeps two sets of
//   accumulators and x sums, and reads x rows 8-15 with a second pair of
//   ldmatrix. A slot's x grows with M (M x 1 KB beside 32 KB of codes), so
//   at M = 16 the ring stays two slots deep and the ring alone streams 82%
//   of the copy bandwidth against 93% at M = 8; the longer math a chunk is
//   the rest (docs/cuda.md, "W4A16 GEMV v4: two token tiles").
//
// Measured at M <= 8 on an H200 (bench/cuda/w4_gemv_tma_harness.cu; docs/cuda.md,
// "W4A16 GEMV v4", sessions seventeen and earlier, raw output in
// bench/cuda/results/h200-w4-gemv-tma*.md): 37.3-37.6 us at M = 1 on
// 8192x28672, 78% of the copy bandwidth, against 42.8-43.2 for the
// session-sixteen kernel (4-chunk slots, HSUB2 in the loop) and 53.1-53.6
// for the fused GEMM in the same runs (the one loss: 14336x4096 at M = 1-2,
// 15.4 vs 14.5 us, not explained); of that, 8-chunk slots gave ~4 us (half
// the slot bookkeeping and barrier waits) and the x sums ~1 us (1.3 at
// M = 8). The ring alone (the `probe` plan flag: no math) streams 98-100%
// at the default depth, so the consumers are still what is left: ncu
// issues 0.47 warp instructions per scheduler cycle (17.9 M in all, 22.8 M
// before), 53% of cycles with no eligible warp; by instruction, 11% of the
// stall samples are consumers waiting on "ready" (with the math on, the
// ring runs dry at times; likely because a slot is refilled only once all
// 8 consumer warps released it), 7% the split-tile flush's fence and
// atomic, the rest the math. Tried and dropped (numbers in docs/cuda.md): round-robin items
// of 4-32 chunks per block instead of one range each (their per-item
// flushes cost more than the window of neighbouring reads gained); the zero
// term from a second all-ones mma in every consumer warp (equal or slower);
// shifts as IMAD.HI on the FMA pipe (slower); one block per SM at 112
// registers (latency-bound). Session seventeen: slots aligned to 8 chunks
// with one chain and one fold per two chunks of a 128-column group (6%
// fewer instructions, no faster: 38.2 vs 38.2 us, and the aligned ranges'
// extra short slot cost ~0.7 us); 3 blocks per SM at 64 registers and 2
// stages (38.5 vs 38.0); deferring the flush of a range's first, shared
// n-block to the end (no faster at M = 1, 1.3 us slower on 4096x14336);
// chunk ci + 1's shared loads before chunk ci's math (37.0 vs 37.6, within
// run-to-run spread).
#include "common.cuh"
#include "pdl.cuh"
#include "w4a16_gemv_common.cuh"
#include "w4a16_gemv_tma.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <type_traits>
#include <vector>

namespace xqcuda {
namespace {
using namespace w4gemv;

constexpr int kSC = 8;               // chunks per ring slot (32 KB of codes)
constexpr int kConsumerWarps = 8;    // one per 16-row tile of the n-block
constexpr int kProducerWarp = kConsumerWarps;
constexpr int kSumWarp = kConsumerWarps + 1;  // the per-slot x sums
constexpr int kThreads = (kConsumerWarps + 2) * 32;  // + the producer and sum warps
constexpr int kDefaultStages = 4;
// Token tiles: the mma's n = 8 tokens; M <= 8 takes one tile, 9 <= M <= 16
// two (the A fragments, dequantized once, feed both).
__host__ __device__ constexpr int token_tiles(int64_t M) { return M > 8 ? 2 : 1; }
// A slot's x sums: [kSC chunks x <= 4 segments][8 nt tokens] F32.
__host__ __device__ constexpr int sum_bytes(int nt) { return kSC * 4 * 8 * nt * 4; }
// Barriers: [stages] full, [stages] empty, [stages] ready (sums written),
// then [kConsumerWarps] "partials in" of the cluster reduction; the
// reduction's slots follow (red_bytes), then the ring.
__host__ __device__ constexpr int barrier_bytes(int stages) { return ((3 * stages + kConsumerWarps) * 8 + 127) & ~127; }
// Whether the zero point leaves the inner loop through per-segment x sums:
// for groups >= 32 (at most 2 scale words a chunk; header comment).
template <int GS>
constexpr bool kZeroBySums = GS <= 2;
constexpr int kMaxCluster = 8;  // n-block parts summed in one cluster at most (the portable cluster size)
// The plan's cost model (H200, session thirty-one, bench/cuda/w4_gemv_tma_harness.cu sweep;
// docs/cuda.md "W4A16 GEMV v4: n-block parts"), in chunks of math: a block's range costs its ring
// slots, whole ones (range_cost: a slot cut short costs about as much as a full one, as its chunks
// go one by one and it is one more round of the ring), each flush through global memory
// (partials, an acquire-release counter, the last block's reads: ~1.8 us) about a slot of 8
// chunks, one through a cluster's shared memory (~0.8 us) half of that.
constexpr int64_t kGlobalFlushChunks = 9, kClusterFlushChunks = 4;
constexpr int kMaxStages = 16;  // the plan's clamp; the producer keeps one early slot's (chunk, count) per stage
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
  int max_contrib;
  int last_group;  // n_groups - 1
  int probe;
  int gs_shift;
  int stages, stage_bytes, sz_off, sum_off, x_off;
  int parts;     // 0: stream-K ranges; >= 1: blocks per n-block (W4GemvTmaPlan::parts)
  int dsmem;     // 1: the parts of an n-block are one cluster and sum its tiles in shared memory
  int ring_off;  // barrier_bytes(stages) + the reduction's slots
#if defined(XQ_W4T_TRACE)
  unsigned long long* trace;  // [block][kTraceStride] (measurement builds only; trace_mark)
#endif
};

// Measurement builds only (-DXQ_W4T_TRACE, bench/cuda/w4_gemv_tma_harness.cu
// "trace"), to see where a call's time goes. A block's row of kTraceStride
// words: mark k (start, the PDL wait, the first slot, the math, the flush)
// as %globaltimer (ns, one clock for all SMs) at [k] and clock64 (this SM's
// cycles) at [8 + k]; per ring round r < kTraceSlots, consumer warp 0's
// clock64 before its wait, after it and after the slot's math at [16 + 3 r +
// 0..2], the sum warp's after its full wait and after its arrival at [64 + 2
// r + 0..1].
#if defined(XQ_W4T_TRACE)
constexpr int kTraceStride = 96, kTraceSlots = 16;
__device__ __forceinline__ void trace_mark(const TmaArgs& p, int k) {
  if (!p.trace) return;
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  p.trace[blockIdx.x * kTraceStride + k] = t;
  p.trace[blockIdx.x * kTraceStride + 8 + k] = clock64();
}
__device__ __forceinline__ void trace_clock(const TmaArgs& p, int round, int base, int per, int k) {
  if (p.trace && round < kTraceSlots) p.trace[blockIdx.x * kTraceStride + base + per * round + k] = clock64();
}
#define W4T_MARK(k) trace_mark(p, k)
#define W4T_ROUND(round, base, per, k) trace_clock(p, round, base, per, k)
#else
#define W4T_MARK(k) ((void)0)
#define W4T_ROUND(round, base, per, k) ((void)0)
#endif

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

// Waits for phase `parity` of this block's mbarrier; kCluster: acquiring at
// cluster scope what arrivals from other blocks of the cluster released.
template <bool kCluster = false>
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t done = 0;
  do {
    // Each try suspends up to 10 ms (0x989680 ns, as CUTLASS's ClusterBarrier).
    if constexpr (kCluster)
      asm volatile(
          "{\n .reg .pred p;\n mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2, %3;\n"
          " selp.u32 %0, 1, 0, p;\n}\n"
          : "=r"(done)
          : "r"(bar), "r"(parity), "r"(0x989680)
          : "memory");
    else
      asm volatile(
          "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, %3;\n selp.u32 %0, 1, 0, p;\n}\n"
          : "=r"(done)
          : "r"(bar), "r"(parity), "r"(0x989680)
          : "memory");
  } while (!done);
#endif
}

// Four 8x8 b16 matrices from shared memory (lane l gives row l % 8 of matrix
// l / 8): the mma B fragments of two k-tiles.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&d)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(addr));
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

// ---- sm_90 PTX: the thread-block cluster ----------------------------------
// PTX ISA, "Parallel Synchronization and Communication Instructions":
// barrier.cluster, mapa, mbarrier with .cluster scope; st.shared::cluster.
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}

// The address of the same shared-memory variable in block `rank` of the cluster.
__device__ __forceinline__ uint32_t map_to_rank(uint32_t addr, uint32_t rank) {
  uint32_t r = addr;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
#endif
  return r;
}

__device__ __forceinline__ void cluster_arrive_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void cluster_wait_acquire() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void st_cluster_f32(uint32_t addr, float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("st.shared::cluster.f32 [%0], %1;\n" ::"r"(addr), "f"(v) : "memory");
#endif
}

// One arrival on an mbarrier of another block of the cluster (or this one),
// releasing this thread's earlier writes at cluster scope.
__device__ __forceinline__ void mbar_arrive_cluster(uint32_t remote_bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(remote_bar) : "memory");
#endif
}

// ---- the walk over one block's ranges --------------------------------------
__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// A position in one range [f, fhi) of f: n-block nb, chunk c of it. A slot
// takes chunks [c, c + n), n = min(kSC, fhi - f, chunks - c): it never spans
// two n-blocks. Producer and consumers step through the same sequence.
struct Cursor {
  int64_t f, fhi, nb;
  int c;
  __device__ __forceinline__ void start(const TmaArgs& p, int64_t flo, int64_t hi) {
    f = flo;
    fhi = hi;
    nb = flo / p.chunks;
    c = static_cast<int>(flo - nb * p.chunks);
  }
  __device__ __forceinline__ int slot_chunks(const TmaArgs& p) const {
    return static_cast<int>(min64(min64(kSC, fhi - f), p.chunks - c));
  }
  __device__ __forceinline__ void advance(const TmaArgs& p, int n) {
    f += n;
    c += n;
    if (c == p.chunks) {
      c = 0;
      ++nb;
    }
  }
};

// The group of column col (< 2^31), clamped: padding columns past K may fall
// past the last group; they multiply zero activations.
__device__ __forceinline__ int group_of(const TmaArgs& p, int col) { return min(col >> p.gs_shift, p.last_group); }

// (q & 0x000F000F) | magic in one LOP3: the nibbles at bits 0 and 16 of q
// as a pair of T holding magic + u (exact). The magic is a register operand:
// with two immediates the compiler emits an AND and an OR.
__device__ __forceinline__ uint32_t nib_pair(uint32_t q, uint32_t magic) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(r) : "r"(q), "n"(0x000F000F), "r"(magic));
  return r;
}

// A pair of nibbles as exact (u - 8 - z) in T: (magic + u) - zb.
template <typename T>
__device__ __forceinline__ uint32_t centered_pair(uint32_t q, uint32_t magic, uint32_t zb) {
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  uint32_t v = nib_pair(q, magic);
  T2 r = __hsub2(*reinterpret_cast<T2*>(&v), *reinterpret_cast<T2*>(&zb));
  return *reinterpret_cast<uint32_t*>(&r);
}

__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}
__device__ __forceinline__ uint2 lds64(uint32_t addr) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
  return v;
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

// One chunk of one tile into acc (rows gid, gid + 8 x tokens 8 j + 2 tig,
// +1 of token tile j < NT): GS scale words per chunk (1: groups >= 64; 2:
// 32; 4: 16), the k-tiles of segment g (one group's columns in the chunk) in
// chain acc[g][j]. kZeroBySums<GS>: the A fragments are the pairs (nibbles |
// magic) = magic + u as they are (one LOP3 a pair), so the chain sums (magic
// + u) x; else they are centred, (magic + u) - zb, exact in 16 bits. A
// k-tile's A fragments are made once for all NT token tiles.
template <typename T, int GS, int NT>
__device__ __forceinline__ void chunk_chain(float (&acc)[GS][NT][4], const uint4& q4, const uint32_t (&b)[NT][8],
                                            const uint2 (&s)[GS]) {
  constexpr int kPerGroup = 4 / GS;
  const uint32_t magic = Magic<T>::kBits;
  const uint32_t words[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
  for (int kt = 0; kt < 4; ++kt) {
    const int g = kt / kPerGroup;
    const uint32_t q = words[kt];
    uint32_t af[4];
    if constexpr (kZeroBySums<GS>) {
      af[0] = nib_pair(q, magic);
      af[1] = nib_pair(q >> 4, magic);
      af[2] = nib_pair(q >> 8, magic);
      af[3] = nib_pair(q >> 12, magic);
    } else {
      const uint32_t zA = __byte_perm(s[g].y, 0, 0x1010), zB = __byte_perm(s[g].y, 0, 0x3232);
      af[0] = centered_pair<T>(q, magic, zA);
      af[1] = centered_pair<T>(q >> 4, magic, zB);
      af[2] = centered_pair<T>(q >> 8, magic, zA);
      af[3] = centered_pair<T>(q >> 12, magic, zB);
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) mma_16816<T>(acc[g][j], af, b[j][2 * kt], b[j][2 * kt + 1]);
  }
}

// The segments' chains into tot, in F32: tot += s (acc - zb sx)
// (kZeroBySums; sx[c][j]: segment c's x sums of tokens 8 j + 2 tig, + 1,
// from the sum warp), or tot += s acc (centred codes).
template <typename T, int GS, int NT>
__device__ __forceinline__ void fold(float (&tot)[NT][4], const float (&acc)[GS][NT][4], const uint2 (&s)[GS],
                                     const float2 (&sx)[GS][NT]) {
#pragma unroll
  for (int c = 0; c < GS; ++c) {
    const float sA = scale_lo<T>(s[c].x), sB = scale_hi<T>(s[c].x);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      if constexpr (kZeroBySums<GS>) {
        const float zA = scale_lo<T>(s[c].y), zB = scale_hi<T>(s[c].y);
        tot[j][0] = fmaf(fmaf(-zA, sx[c][j].x, acc[c][j][0]), sA, tot[j][0]);
        tot[j][1] = fmaf(fmaf(-zA, sx[c][j].y, acc[c][j][1]), sA, tot[j][1]);
        tot[j][2] = fmaf(fmaf(-zB, sx[c][j].x, acc[c][j][2]), sB, tot[j][2]);
        tot[j][3] = fmaf(fmaf(-zB, sx[c][j].y, acc[c][j][3]), sB, tot[j][3]);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) tot[j][e] = fmaf(acc[c][j][e], e < 2 ? sA : sB, tot[j][e]);
      }
    }
  }
}

// The sum warp's share of NC chunks of a slot: the x sums of their GS
// segments each, for all 8 NT tokens, through the tensor cores (A = ones:
// every row of the product holds the column sums of B; exact products, F32
// sums), stored [chunk][segment][token]. All B fragments first, then the NC
// x NT chains interleaved (the asm statements keep their order): one slot's
// sums cost about one chain's latency, not NC of them. xs[j]: token tile j's
// ldmatrix address.
template <typename T, int GS, int NC, int NT>
__device__ __forceinline__ void chunk_sums(const uint32_t (&xs)[NT], uint32_t dst, int lane) {
  constexpr int kPerGroup = 4 / GS;
  const uint32_t one = std::is_same_v<T, __half> ? 0x3C003C00u : 0x3F803F80u;
  const uint32_t ones[4] = {one, one, one, one};
  uint32_t b[NC][NT][8];
#pragma unroll
  for (int ci = 0; ci < NC; ++ci)
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      ldmatrix_x4(*reinterpret_cast<uint32_t(*)[4]>(&b[ci][j][0]), xs[j] + ci * 128);
      ldmatrix_x4(*reinterpret_cast<uint32_t(*)[4]>(&b[ci][j][4]), xs[j] + ci * 128 + 64);
    }
  float acc[NC][NT][GS][4] = {};
#pragma unroll
  for (int kt = 0; kt < 4; ++kt)
#pragma unroll
    for (int ci = 0; ci < NC; ++ci)
#pragma unroll
      for (int j = 0; j < NT; ++j)
        mma_16816<T>(acc[ci][j][kt / kPerGroup], ones, b[ci][j][2 * kt], b[ci][j][2 * kt + 1]);
  if (lane < 4) {  // row 0: tokens 8 j + 2 lane, + 1
#pragma unroll
    for (int ci = 0; ci < NC; ++ci)
#pragma unroll
      for (int c = 0; c < GS; ++c)
#pragma unroll
        for (int j = 0; j < NT; ++j)
          asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(dst + (((ci * GS + c) * NT + j) * 8 + 2 * lane) * 4),
                       "f"(acc[ci][j][c][0]), "f"(acc[ci][j][c][1])
                       : "memory");
  }
}

// Tile t = nb * 8 + warp, chunks [cs, ce) of it are in tot: this block's
// share of the tile (flush_split_tile, w4a16_gemv_common.cuh; the units are
// chunks of n-blocks, the tile's those of n-block nb). Published with one
// acquire-release atomic instead of two fences: 9% faster at M = 1 on
// 4096 x 4096, 3% on 4096 x 14336 in session seventeen's harness.
template <typename T, int NA>
__device__ __forceinline__ void flush_tile(const TmaArgs& p, int64_t nb, int warp, int64_t cs, int64_t ce,
                                           const float (&tot)[NA], int lane) {
  flush_split_tile<T, TmaArgs, SplitFlush::kAcqRel>(p, nb * 8 + warp, nb * p.chunks, p.per_cta, blockIdx.x, cs, ce, tot,
                                                    lane);
}

// The end of block rank r's share of tile t = nb * 8 + warp when the
// cluster's `s` blocks are the parts of n-block nb (plan.dsmem): the tile's reducer,
// block warp % s, holds a slot of M x 16 F32 per contributor (its tiles in
// order warp / s, then the contributor's rank); each lane stores its values
// into the reducer's slot through distributed shared memory and arrives on
// the reducer's "partials in" barrier for the tile (s x 32 arrivals,
// release at cluster scope); the reducer's warp waits for them (acquire) and
// sums the slots in rank order: deterministic, no global workspace, no
// atomics. A block leaves only after its own tiles are summed, and the
// blocks that write into it arrive after writing, so no block's shared
// memory is written after it exits.
template <typename T, int NA>
__device__ __forceinline__ void flush_tile_cluster(const TmaArgs& p, int64_t nb, int warp, const float (&tot)[NA],
                                                   int lane, uint32_t red_u32, uint32_t red_bars_u32) {
  const int s = p.parts, gid = lane >> 2, tig = lane & 3;
  const uint32_t rank = cluster_rank(), reducer = static_cast<uint32_t>(warp % s);
  const int local = warp / s;  // this tile among the reducer's
  const int slot_floats = p.M * 16;
  const uint32_t slot = map_to_rank(red_u32 + (local * s + rank) * slot_floats * 4, reducer);
#pragma unroll
  for (int e = 0; e < NA; ++e) {  // token tile e / 4 (flush_split_tile's order)
    const int m = (e >> 2) * 8 + 2 * tig + (e & 1);
    if (m < p.M) st_cluster_f32(slot + (m * 16 + gid + ((e & 3) >= 2 ? 8 : 0)) * 4, tot[e]);
  }
  mbar_arrive_cluster(map_to_rank(red_bars_u32 + local * 8, reducer));
  if (rank != reducer) return;
  mbar_wait<true>(red_bars_u32 + local * 8, 0);
  const int64_t t = nb * kConsumerWarps + warp;
  for (int i = lane; i < slot_floats; i += 32) {
    const int64_t n = t * 16 + (i & 15);
    if (n >= p.N) continue;
    float v = 0.f;
    for (int r = 0; r < s; ++r) {
      float part;
      asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(part) : "r"(red_u32 + ((local * s + r) * slot_floats + i) * 4));
      v += part;
    }
    store_y<T>(p, i >> 4, n, v);
  }
}

template <typename T, int GS, int NT>
__global__ void __launch_bounds__(kThreads, 2) k_w4_gemv_tma(const TmaArgs p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // sm_90 only (the bulk copies): the host launches it nowhere else (w4_gemv_tma_supported)
#endif
  extern __shared__ __align__(128) unsigned char smem[];
  // [stages] full, [stages] empty, [stages] ready, [8] partials-in barriers, the reduction's slots,
  // then the ring slots (128-aligned).
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem);
  unsigned char* ring = smem + p.ring_off;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const bool clustered = p.dsmem != 0;
  int64_t flo, fhi;
  if (p.parts > 0) {  // part blockIdx % parts of n-block blockIdx / parts (the plan leaves none empty)
    const int64_t nb = blockIdx.x / p.parts, first = nb * p.chunks;
    flo = first + (blockIdx.x % p.parts) * p.per_cta;
    fhi = min64(flo + p.per_cta, first + p.chunks);
  } else {
    flo = static_cast<int64_t>(blockIdx.x) * p.per_cta;
    fhi = min64(flo + p.per_cta, p.total);
    if (flo >= fhi) return;  // whole block: no barrier is reached
  }
  if (threadIdx.x == 0) {
    for (int s = 0; s < p.stages; ++s) {
      mbar_init(smem_u32(bars + s), 1);                            // full: the producer's expect_tx
      mbar_init(smem_u32(bars + p.stages + s), kConsumerWarps);  // empty: one arrival per consumer warp
      mbar_init(smem_u32(bars + 2 * p.stages + s), 1);            // ready: the sum warp's lane 0
    }
    if (clustered)  // partials in: every lane of the tile's p.parts contributors
      for (int t = 0; t < kConsumerWarps; ++t) mbar_init(smem_u32(bars + 3 * p.stages + t), 32 * p.parts);
    mbar_init_fence();
  }
  __syncthreads();
  // The other blocks may arrive on this one's barriers only once they are initialised: every thread
  // arrives here, and the consumers wait before their first remote access (at their flush). Threads
  // that exit without waiting do not hold the barrier up (barrier.cluster.wait waits for the
  // non-exited threads).
  if (clustered) cluster_arrive_release();
  if (threadIdx.x == 0) W4T_MARK(0);

  if (warp == kProducerWarp) {  // producer
    if (lane != 0) return;
    const uint64_t pol = evict_first_policy();
    // PDL (pdl.cuh): the codes and scale words are constants uploaded at load,
    // so the first round of slots (an empty ring) gets them before the wait
    // for the kernel that writes x, overlapping that kernel's tail; x of
    // those slots follows the wait. Their (chunk, count) wait here meanwhile.
    int early_c[kMaxStages], early_n[kMaxStages];
    int issued = 0;
    bool waited = false;
    const auto copy_x = [&](int slot, int c, int n) {
      unsigned char* dst = ring + slot * p.stage_bytes;
      for (int m = 0; m < p.M; ++m)
        bulk_copy(smem_u32(dst + p.x_off + m * kXRowBytes), static_cast<const T*>(p.x) + m * p.ldx + c * 64,
                  n * 128u, smem_u32(bars + slot));
    };
    const auto wait_then_copy_early_x = [&] {
      pdl_wait();
      W4T_MARK(1);
      pdl_launch_dependents();  // after the wait: at most one kernel runs ahead (pdl.cuh)
      for (int i = 0; i < issued && i < p.stages; ++i) copy_x(i, early_c[i], early_n[i]);
      waited = true;
    };
    int slot = 0;
    uint32_t phase = 0;
    Cursor cur;
    for (cur.start(p, flo, fhi); cur.f < cur.fhi;) {
      const int n = cur.slot_chunks(p);
      // A fresh barrier counts the phase before its first as complete: round 0 passes.
      mbar_wait(smem_u32(bars + p.stages + slot), phase ^ 1);
      const int g0 = group_of(p, cur.c * 64), g1 = group_of(p, (cur.c + n) * 64 - 1);
      const uint32_t code_bytes = n * 4096u, sz_bytes = static_cast<uint32_t>(g1 - g0 + 1) * 512u, x_bytes = n * 128u;
      const uint32_t full = smem_u32(bars + slot);
      mbar_arrive_expect_tx(full, code_bytes + sz_bytes + p.M * x_bytes);
      unsigned char* dst = ring + slot * p.stage_bytes;
      bulk_copy_hint(smem_u32(dst), p.qw + cur.f * 256, code_bytes, full, pol);
      bulk_copy(smem_u32(dst + p.sz_off), p.sz + (cur.nb * p.n_groups + g0) * 64, sz_bytes, full);
      if (waited) {
        copy_x(slot, cur.c, n);
      } else {
        early_c[issued] = cur.c;
        early_n[issued] = n;
      }
      ++issued;
      if (!waited && issued == p.stages) wait_then_copy_early_x();
      cur.advance(p, n);
      if (++slot == p.stages) {
        slot = 0;
        phase ^= 1;
      }
    }
    if (!waited) wait_then_copy_early_x();  // a range of fewer slots than the ring
    return;
  }

  const int gid = lane >> 2;
  const uint32_t ring_u32 = smem_u32(ring);
  // ldmatrix rows: for token tile j, lane l reads x row min(8 j + l % 8, M - 1) of matrix l / 8 =
  // (k-tile, half), 16 bytes apart.
  uint32_t x_lane[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j)
    x_lane[j] = ring_u32 + p.x_off + min(8 * j + (lane & 7), p.M - 1) * kXRowBytes + (lane >> 3) * 16;

  if (warp == kSumWarp) {  // the x sums of each slot's segments, for the consumers' zero term
    if constexpr (!kZeroBySums<GS>) return;
    // Nothing before the full barrier: x arrives after the producer's PDL wait.
    int slot = 0, round = 0;  // round: the trace's only
    uint32_t phase = 0;
    Cursor cur;
    for (cur.start(p, flo, fhi); cur.f < cur.fhi;) {
      const int n = cur.slot_chunks(p);
      mbar_wait(smem_u32(bars + slot), phase);
      if (lane == 0 && cur.f == flo) W4T_MARK(2);
      if (lane == 0) W4T_ROUND(round, 64, 2, 0);
      const uint32_t dst = ring_u32 + slot * p.stage_bytes + p.sum_off;
      uint32_t xs[NT];
#pragma unroll
      for (int j = 0; j < NT; ++j) xs[j] = x_lane[j] + slot * p.stage_bytes;
      constexpr int kNC = 4 / NT;  // chunks a batch: four chains interleaved
      if (n == kSC) {  // a full slot: kNC chunks at a time
#pragma unroll
        for (int ci = 0; ci < kSC; ci += kNC) {
          uint32_t a[NT];
#pragma unroll
          for (int j = 0; j < NT; ++j) a[j] = xs[j] + ci * 128;
          chunk_sums<T, GS, kNC, NT>(a, dst + ci * GS * NT * 32, lane);
        }
      } else {
        for (int ci = 0; ci < n; ++ci) {
          uint32_t a[NT];
#pragma unroll
          for (int j = 0; j < NT; ++j) a[j] = xs[j] + ci * 128;
          chunk_sums<T, GS, 1, NT>(a, dst + ci * GS * NT * 32, lane);
        }
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(smem_u32(bars + 2 * p.stages + slot));
      if (lane == 0) W4T_ROUND(round, 64, 2, 1);
      ++round;
      cur.advance(p, n);
      if (++slot == p.stages) {
        slot = 0;
        phase ^= 1;
      }
    }
    return;
  }

  // Consumers: warp w = tile w of each n-block. Nothing they read comes
  // before x, which the producer copies after its wait; they wait too, before
  // the partials, counters and y of the flush, which earlier kernels use.
  pdl_wait();
  if (warp == 0 && lane == 0) W4T_MARK(3);
  pdl_launch_dependents();
  // With the sums, a slot is ready once the sum warp has seen it full and
  // written its sums (its arrival releases what its wait acquired: the
  // copies' bytes and the sums).
  const int wait_bar = kZeroBySums<GS> ? 2 * p.stages : 0;
  float tot[NT][4] = {};
  int slot = 0, round = 0;  // round: the trace's only
  uint32_t phase = 0;
  Cursor cur;
  int cs = -1;  // first chunk of the current n-block in this block's range
  for (cur.start(p, flo, fhi); cur.f < cur.fhi;) {
    const int n = cur.slot_chunks(p);
    if (cs < 0) cs = cur.c;
    if (warp == 0 && lane == 0) W4T_ROUND(round, 16, 3, 0);
    mbar_wait(smem_u32(bars + wait_bar + slot), phase);
    if (warp == 0 && lane == 0) W4T_ROUND(round, 16, 3, 1);
    if (warp == 0 && lane == 0 && cur.f == flo) W4T_MARK(4);
    if (!p.probe) {
      const uint32_t src = ring_u32 + slot * p.stage_bytes;
      const uint32_t qs = src + (warp * 32 + lane) * 16;
      const uint32_t ss = src + p.sz_off + (warp * 8 + gid) * 8;
      const uint32_t sxs = src + p.sum_off + (lane & 3) * 8;  // tokens 8 j + 2 tig, + 1
      const int g0 = group_of(p, cur.c * 64);
      auto chunk = [&](int ci) {
        uint2 sw[GS];
#pragma unroll
        for (int g = 0; g < GS; ++g) sw[g] = lds64(ss + (group_of(p, (cur.c + ci) * 64 + g * (64 / GS)) - g0) * 512);
        uint32_t b[NT][8];
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const uint32_t xs = x_lane[j] + slot * p.stage_bytes + ci * 128;
          ldmatrix_x4(*reinterpret_cast<uint32_t(*)[4]>(&b[j][0]), xs);
          ldmatrix_x4(*reinterpret_cast<uint32_t(*)[4]>(&b[j][4]), xs + 64);
        }
        float2 sx[GS][NT];
#pragma unroll
        for (int g = 0; g < GS; ++g)
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            if constexpr (kZeroBySums<GS>) {
              const uint2 v = lds64(sxs + ((ci * GS + g) * NT + j) * 32);
              sx[g][j] = make_float2(__uint_as_float(v.x), __uint_as_float(v.y));
            } else {
              sx[g][j] = make_float2(0.f, 0.f);
            }
          }
        float acc[GS][NT][4] = {};
        chunk_chain<T, GS, NT>(acc, lds128(qs + ci * 4096), b, sw);
        fold<T, GS, NT>(tot, acc, sw, sx);
      };
      if (n == kSC) {  // a full slot: no per-chunk guards
#pragma unroll
        for (int ci = 0; ci < kSC; ++ci) chunk(ci);
      } else {
#pragma unroll
        for (int ci = 0; ci < kSC; ++ci)
          if (ci < n) chunk(ci);
      }
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(smem_u32(bars + p.stages + slot));
    if (warp == 0 && lane == 0) W4T_ROUND(round, 16, 3, 2);
    ++round;
    if (++slot == p.stages) {
      slot = 0;
      phase ^= 1;
    }
    const int64_t nb = cur.nb;
    const int ce = cur.c + n;
    cur.advance(p, n);
    if (ce == p.chunks || cur.f == cur.fhi) {
      if (warp == 0 && lane == 0 && cur.f == cur.fhi) W4T_MARK(5);
      const float(&flat)[4 * NT] = *reinterpret_cast<const float(*)[4 * NT]>(&tot[0][0]);  // token tile j at [4 j]
      if (clustered) {  // the range is one part of one n-block: this is its only flush
        cluster_wait_acquire();
        flush_tile_cluster<T>(p, nb, warp, flat, lane, smem_u32(smem + barrier_bytes(p.stages)),
                              smem_u32(bars + 3 * p.stages));
      } else if (p.parts > 0) {  // the same through the workspace: contributor = part, slots from n-block start
        flush_split_tile<T, TmaArgs, SplitFlush::kAcqRel>(p, nb * 8 + warp, 0, p.per_cta, blockIdx.x % p.parts, cs, ce,
                                                          flat, lane);
      } else {
        flush_tile<T>(p, nb, warp, cs, ce, flat, lane);
      }
      if (lane == 0 && cur.f == cur.fhi && (warp == 0 || warp == kConsumerWarps - 1)) W4T_MARK(warp == 0 ? 6 : 7);
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) tot[j][e] = 0.f;
      cs = -1;
    }
  }
}

int scale_words_per_chunk(const W4Layout& L) { return L.gs_shift >= 6 ? 1 : 64 >> L.gs_shift; }

// Instantiations: kind 0 = F16, 1 = BF16; gsi 0, 1, 2 = one, two, four scale
// words per chunk; nt 1 or 2 token tiles (token_tiles(M)). One id per
// instantiation, kind * 6 + gsi * 2 + nt - 1, keys the host's caches.
constexpr int kKernels = 12;
struct KernelId {
  int id;
  KernelId(int kind, int gsi, int nt) : id(kind * 6 + gsi * 2 + nt - 1) {}
};
int gs_index(int gs) { return gs == 1 ? 0 : gs == 2 ? 1 : 2; }
template <typename T, int GS>
void* kernel_for_nt(int nt) {
  return nt == 1 ? reinterpret_cast<void*>(&k_w4_gemv_tma<T, GS, 1>)
                 : reinterpret_cast<void*>(&k_w4_gemv_tma<T, GS, 2>);
}
template <typename T>
void* kernel_for_gs(int gsi, int nt) {
  return gsi == 0 ? kernel_for_nt<T, 1>(nt) : gsi == 1 ? kernel_for_nt<T, 2>(nt) : kernel_for_nt<T, 4>(nt);
}
void* kernel_for(KernelId k) {
  const int kind = k.id / 6, gsi = (k.id % 6) / 2, nt = k.id % 2 + 1;
  return kind == 0 ? kernel_for_gs<__half>(gsi, nt) : kernel_for_gs<__nv_bfloat16>(gsi, nt);
}

// The launch configuration: `cluster` > 1 launches blocks in clusters of
// that many (n-block parts summed in the cluster); with PDL where the device has it
// (pdl.cuh), so the kernel prefetches its first slots' codes before waiting
// for the kernel that writes x. attrs must outlive the config's use.
cudaLaunchConfig_t launch_config(int blocks, int smem, int cluster, cudaStream_t s, cudaLaunchAttribute (&attrs)[2]) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = s;
  cfg.attrs = attrs;
  cfg.numAttrs = 0;
  if (cluster > 1) {
    attrs[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attrs[cfg.numAttrs].val.clusterDim.x = static_cast<unsigned>(cluster);
    attrs[cfg.numAttrs].val.clusterDim.y = 1;
    attrs[cfg.numAttrs].val.clusterDim.z = 1;
    ++cfg.numAttrs;
  }
  if (pdl_enabled()) {
    attrs[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[cfg.numAttrs].val.programmaticStreamSerializationAllowed = 1;
    ++cfg.numAttrs;
  }
  return cfg;
}

cudaError_t launch(KernelId k, const TmaArgs& a, int blocks, int smem, cudaStream_t s) {
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t cfg = launch_config(blocks, smem, a.dsmem ? a.parts : 1, s, attrs);
  void* args[] = {const_cast<TmaArgs*>(&a)};
  const cudaError_t e = cudaLaunchKernelExC(&cfg, kernel_for(k), args);
  const cudaError_t last = cudaGetLastError();  // clears the launch error, as launch_pdl does
  return e != cudaSuccess ? e : last;
}

// Raises each instantiation's dynamic shared-memory limit once (to the most
// a block may have), so plans of any size launch.
cudaError_t allow_smem(KernelId k) {
  static std::atomic<bool> done[kKernels];
  std::atomic<bool>& d = done[k.id];
  if (d.load(std::memory_order_acquire)) return cudaSuccess;
  int dev = 0, cap = 0;
  cudaGetDevice(&dev);
  if (cudaDeviceGetAttribute(&cap, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();
    cap = 48 << 10;
  }
  const cudaError_t e = cudaFuncSetAttribute(kernel_for(k), cudaFuncAttributeMaxDynamicSharedMemorySize, cap);
  if (e == cudaSuccess) d.store(true, std::memory_order_release);
  return e;
}

// Blocks per SM of one instantiation at one shared-memory size (it depends
// on M, the group size and the stages), cached: the occupancy query costs
// microseconds and plans are made at every call.
int resident_blocks_per_sm(KernelId k, int smem_bytes) {
  struct Entry {
    int id, smem, blocks;
  };
  static std::mutex mu;
  static std::vector<Entry> cache;
  std::lock_guard<std::mutex> lock(mu);
  for (const Entry& e : cache)
    if (e.id == k.id && e.smem == smem_bytes) return e.blocks;
  int n = 0;
  if (allow_smem(k) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel_for(k), kThreads,
                                                    static_cast<size_t>(smem_bytes)) != cudaSuccess) {
    cudaGetLastError();
    n = 0;
  }
  if (cache.size() < 256) cache.push_back({k.id, smem_bytes, n});
  return n;
}

// Clusters of `cluster` blocks of one instantiation at one shared-memory size
// that can be resident at once (0 where the query fails), cached as above.
int resident_clusters(KernelId k, int smem_bytes, int cluster) {
  struct Entry {
    int id, smem, cluster, clusters;
  };
  static std::mutex mu;
  static std::vector<Entry> cache;
  std::lock_guard<std::mutex> lock(mu);
  for (const Entry& e : cache)
    if (e.id == k.id && e.smem == smem_bytes && e.cluster == cluster) return e.clusters;
  int n = 0;
  cudaLaunchAttribute attrs[2];
  cudaLaunchConfig_t cfg = launch_config(cluster, smem_bytes, cluster, nullptr, attrs);
  if (allow_smem(k) != cudaSuccess || cudaOccupancyMaxActiveClusters(&n, kernel_for(k), &cfg) != cudaSuccess) {
    cudaGetLastError();
    n = 0;
  }
  if (cache.size() < 256) cache.push_back({k.id, smem_bytes, cluster, n});
  return n;
}

#if defined(XQ_W4T_TRACE)
unsigned long long* g_trace = nullptr;
#endif

}  // namespace

#if defined(XQ_W4T_TRACE)
void w4_gemv_tma_set_trace(unsigned long long* buffer) { g_trace = buffer; }
#endif

bool w4_gemv_tma_supported(int cc_major) {
  if (cc_major != 9) return false;
  // And the code the device runs was built for sm_90: a build whose -gencode list left sm_90a out
  // would JIT the compute_80 PTX, where the kernel body is a trap.
  static const bool built_for_90 = [] {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, kernel_for(KernelId(1, 0, 1))) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return attr.ptxVersion >= 90;
  }();
  return built_for_90;
}

namespace {

// A ring that fits: the deepest (<= kDefaultStages, >= 2) that keeps 2 blocks
// on an SM by default, or the depth asked for cut to what fits one block,
// after `head` bytes of barriers and reduction slots.
// A range of `chunks` chunks in the cost model: its ring slots, whole.
int64_t range_cost(int64_t chunks) { return (chunks + kSC - 1) / kSC * kSC; }

struct RingFit {
  int stages = 0, smem_bytes = 0, per_sm = 0;
};
RingFit fit_ring(KernelId k, int stage_bytes, int extra_head, int stages_asked, int max_blocks_per_sm) {
  RingFit r;
  r.stages = stages_asked > 0 ? std::min(stages_asked, kMaxStages) : kDefaultStages;
  const auto smem_of = [&](int st) { return barrier_bytes(st) + extra_head + st * stage_bytes; };
  r.smem_bytes = smem_of(r.stages);
  r.per_sm = resident_blocks_per_sm(k, r.smem_bytes);
  const int want = stages_asked > 0 ? 1 : 2;
  while (r.per_sm < want && r.stages > want) {
    --r.stages;
    r.smem_bytes = smem_of(r.stages);
    r.per_sm = resident_blocks_per_sm(k, r.smem_bytes);
  }
  r.per_sm = std::max(r.per_sm, 1);
  if (max_blocks_per_sm > 0) r.per_sm = std::min(r.per_sm, max_blocks_per_sm);
  return r;
}

// Stream-K's ranges in the cost model: one flush per n-block boundary they
// cross (none where they are whole n-blocks, one where they tile n-blocks
// exactly) and a slot cut short at the boundary.
int64_t stream_k_cost(int64_t per, int64_t chunks) {
  const int64_t flushes = per % chunks == 0 ? 0 : (per < chunks && chunks % per == 0) ? 1 : 2;
  return range_cost(per) + (flushes == 2 ? kSC : 0) + flushes * kGlobalFlushChunks;
}

// One way to cut every n-block into s equal parts, a block each.
struct PartsChoice {
  int s = 0;  // 0: none fits
  int64_t per = 0, cost = 0;
  bool dsmem = false;  // summed in a cluster of the s blocks
  int red = 0, clusters = 0;
  RingFit ring;
};

// The cheapest part count by the cost model (only `parts`, where > 0): with
// s > 1 the parts sum in a cluster (s <= 8, `clusters` allowed) where all the
// clusters fit at once with the reduction's slots and as many blocks on an SM
// as without, else through the workspace.
PartsChoice cheapest_parts(const W4Layout& L, int64_t M, KernelId k, int stage_bytes, const RingFit& ring,
                           int64_t slots, int stages, int max_blocks_per_sm, bool clusters, int parts) {
  PartsChoice best;
  const int max_s = static_cast<int>(std::min<int64_t>(L.chunks, slots / L.n_blocks));
  for (int s = max_s; s >= 1; --s) {
    const int64_t per = (L.chunks + s - 1) / s;
    if ((L.chunks + per - 1) / per != s) continue;  // an empty part: a smaller s covers it
    if (parts > 0 && s != parts) continue;
    PartsChoice c;
    c.s = s;
    c.per = per;
    c.ring = ring;
    c.cost = range_cost(per) + (s > 1 ? kGlobalFlushChunks : 0);
    if (clusters && s > 1 && s <= kMaxCluster) {
      const int red = static_cast<int>((((kConsumerWarps + s - 1) / s) * s * M * 64 + 127) & ~127LL);
      const RingFit cring = fit_ring(k, stage_bytes, red, stages, max_blocks_per_sm);
      c.clusters = resident_clusters(k, cring.smem_bytes, s);
      if (c.clusters >= L.n_blocks && cring.per_sm >= ring.per_sm) {
        c.dsmem = true;
        c.red = red;
        c.ring = cring;
        c.cost = range_cost(per) + kClusterFlushChunks;
      }
    }
    if (best.s == 0 || c.cost < best.cost) best = c;
  }
  return best;
}

}  // namespace

W4GemvTmaPlan w4_gemv_tma_plan(const W4Layout& L, int64_t M, bool is_f16, int sm_count, int stages,
                               int max_blocks_per_sm, W4GemvTmaSplit split, int parts) {
  W4GemvTmaPlan plan;
  // Scale-word groups one slot can touch: W = kSC x 64 columns meet at most
  // (W - 1) / G + 2 groups of G columns.
  const int64_t max_groups =
      L.gs_shift >= 30 ? 1 : std::min<int64_t>(L.n_groups, ((kSC * 64 - 1) >> L.gs_shift) + 2);
  plan.x_off = static_cast<int>(kSC * 4096 + max_groups * 512 + sum_bytes(token_tiles(M)));
  plan.stage_bytes = static_cast<int>(plan.x_off + ((M * kXRowBytes + 127) & ~127LL));
  const KernelId k(is_f16 ? 0 : 1, gs_index(scale_words_per_chunk(L)), token_tiles(M));
  const int64_t total = L.n_blocks * L.chunks, tiles = L.n_blocks * kConsumerWarps;

  // Stream-K: equal ranges of the flat (n-block, chunk) order over every block that fits at once.
  const RingFit ring = fit_ring(k, plan.stage_bytes, 0, stages, max_blocks_per_sm);
  const int64_t slots = static_cast<int64_t>(std::max(sm_count, 1)) * ring.per_sm;
  const int64_t per_sk = std::max<int64_t>(1, (total + slots - 1) / slots);

  // N-block parts where there are no more n-blocks than blocks that fit at once, and where the cost
  // model puts them before stream-K (or they are asked for).
  if (split != W4GemvTmaSplit::kStreamK && L.n_blocks <= slots) {
    const PartsChoice c = cheapest_parts(L, M, k, plan.stage_bytes, ring, slots, stages, max_blocks_per_sm,
                                         split != W4GemvTmaSplit::kPartsGlobal, parts);
    const bool forced = split == W4GemvTmaSplit::kParts || split == W4GemvTmaSplit::kPartsGlobal;
    if (c.s > 0 && (forced || c.cost < stream_k_cost(per_sk, L.chunks))) {
      plan.parts = c.s;
      plan.dsmem = c.dsmem;
      plan.red_bytes = c.red;
      plan.clusters_resident = c.clusters;
      plan.per_cta = c.per;
      plan.blocks = static_cast<int>(L.n_blocks * c.s);
      plan.stages = c.ring.stages;
      plan.smem_bytes = c.ring.smem_bytes;
      plan.max_contrib = c.s;
      const bool shared = c.s > 1 && !c.dsmem;  // summed through the workspace, slot = part
      plan.workspace_floats = shared ? tiles * c.s * M * 16 : 0;
      plan.counters = shared ? tiles : 0;
      return plan;
    }
  }
  plan.stages = ring.stages;
  plan.smem_bytes = ring.smem_bytes;
  plan.per_cta = per_sk;
  plan.blocks = static_cast<int>((total + plan.per_cta - 1) / plan.per_cta);
  // An n-block's chunks [b C, b C + C) meet at most ceil((C - 1) / P) + 1 ranges.
  plan.max_contrib = static_cast<int>((L.chunks - 1 + plan.per_cta - 1) / plan.per_cta + 1);
  // Ranges that are whole multiples of an n-block's chunks never split one.
  const bool shared = plan.per_cta % L.chunks != 0;
  plan.workspace_floats = shared ? tiles * plan.max_contrib * M * 16 : 0;
  plan.counters = shared ? tiles : 0;
  return plan;
}

cudaError_t w4_gemv_tma(const W4Layout& L, const W4GemvTmaPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                        const void* x, int64_t ldx, int64_t M, void* y, const void* bias, DType bias_type,
                        float* partial, int* counters, cudaStream_t stream) {
  if (M < 1 || M > kW4GemvTmaMaxM || plan.blocks < 1 || plan.per_cta < 1 || plan.stages < 1 || plan.stages > kMaxStages ||
      L.gs_shift < 4)
    return cudaErrorInvalidValue;
  if (plan.counters > 0 && (!partial || !counters)) return cudaErrorInvalidValue;
  if (plan.parts < 0 || (plan.dsmem && (plan.parts < 2 || plan.parts > kMaxCluster))) return cudaErrorInvalidValue;
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
  a.probe = plan.probe;
  a.max_contrib = plan.max_contrib;
  a.gs_shift = L.gs_shift;
  a.last_group = static_cast<int>(L.n_groups - 1);
  a.stages = plan.stages;
  a.stage_bytes = plan.stage_bytes;
  a.sz_off = kSC * 4096;
  a.sum_off = plan.x_off - sum_bytes(token_tiles(M));
  a.x_off = plan.x_off;
  a.parts = plan.parts;
  a.dsmem = plan.dsmem ? 1 : 0;
  a.ring_off = barrier_bytes(plan.stages) + plan.red_bytes;
#if defined(XQ_W4T_TRACE)
  a.trace = g_trace;
#endif
  const KernelId k(is_f16 ? 0 : 1, gs_index(scale_words_per_chunk(L)), token_tiles(M));
  if (cudaError_t e = allow_smem(k); e != cudaSuccess) return e;
  return launch(k, a, plan.blocks, plan.smem_bytes, stream);
}

}  // namespace xqcuda
