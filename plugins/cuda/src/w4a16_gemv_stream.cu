// w4a16_gemv_stream.cu: the streaming W4A16 GEMV ("v3") for decode batches
// (M <= 8) on the stored "cuda-w4a16-mma" layout, aimed at the copy
// bandwidth at M = 1.
//
// What limited the split GEMV (w4a16_gemv.cu) on an H200: shorter blocks ran
// faster (4, 12, 24 blocks per SM: 71.3, 63.7, 60.6 us at M = 1 on
// 8192x28672), so the time went into each block's start-up (staging x,
// a barrier, the first loads' latency with nothing else in flight) and the
// drain at its end, not into issue. So here:
// - One wave, persistent: the grid is what fits on the SMs at once (the
//   occupancy API), and warp w streams the flat range [w L, (w + 1) L) of
//   (16-row tile, 64-column chunk) pairs, tile-major, crossing tile
//   boundaries without a pause (the Stream-K split of Osama et al., "Stream-K:
//   Work-centric Parallel Decomposition for Dense Matrix-Matrix
//   Multiplication on the GPU", PPoPP 2023, per warp instead of per block).
//   Every warp gets the same number of chunks whatever the shape, and starts
//   and drains once per launch.
// - A register ring of D chunks per warp (codes plus their scale words,
//   D = 8 for groups >= 64: eight independent 16-byte loads per lane in
//   flight, issued before any is used); each slot is refilled right after it
//   is consumed, so D loads stay in flight through the whole range.
// - No shared memory and no barrier: a lane reads its mma B fragments (two
//   32-bit words of x per k-tile) from global memory through L1. x is
//   M x K x 2 bytes (16 KB at M = 1, K = 8192), read by every warp, and stays
//   in L1 because the weight loads do not allocate there; staging it in
//   shared memory instead would bound K x M by the shared memory (M = 8 at
//   K = 14336 does not fit) and put a barrier back.
// - mma, not FMA, even at M = 1: the layout already holds each lane's four
//   m16n8k16 A fragments per chunk, so the dequantized pairs go straight into
//   the mma; an FMA path would need per-row unpacking and a cross-lane
//   reduction. The count per chunk and warp (about 16 LOP3/HSUB2/HMUL2
//   triples, 16 byte-perms, 8 x loads, 4 mma, one 16-byte load) is about 80
//   instructions against the ~110 issue slots one SM has per 512-byte chunk
//   at 4.8 TB/s over 132 SMs at 1.98 GHz, so the math fits under the stream.
//   Two accumulator chains halve the mma latency in series.
// - TMA bulk copies into a shared ring (cp.async.bulk) were the other
//   option; they need a barrier per stage between producer and consumers
//   (mbarrier) and a shared-memory round trip for every weight byte, which
//   is the fused GEMM's pattern (w4a16_gemm.cu) that this kernel is meant to
//   beat at M = 1. llama.cpp's mmvq (ggml-cuda/mmvq.cu) and Marlin (vLLM
//   csrc/quantization/gptq_marlin) also load weights with plain vector
//   loads into registers for the small-M case.
//
// Tiles that one warp covers whole are written directly (with the bias).
// A tile split between warps (at most max_contrib of them) gets F32 partials
// in one workspace slot per warp; the last warp to arrive (a per-tile
// counter it resets) sums the slots in order and writes y: deterministic,
// one launch, no zeroed workspace.
#include "common.cuh"
#include "w4a16_gemv_common.cuh"
#include "w4a16_gemv_stream.hpp"

#include <algorithm>
#include <atomic>
#include <type_traits>

namespace xqcuda {
namespace {
using namespace w4gemv;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMinBlocksPerSm = 2;  // 120 registers per thread on sm_90 (ring 48, x 8, accumulators 8)

struct StreamArgs {
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
  int64_t N, n_groups, chunks, total, per_warp;
  int max_contrib;
  int gs_shift;
};

// GS: scale words per chunk (1 for groups >= 64, 2 for 32, 4 for 16). D:
// ring slots, so that the ring is 48 registers for every GS.
template <int GS>
struct Ring {
  static constexpr int D = GS == 1 ? 8 : GS == 2 ? 6 : 4;
};

// One chunk of one tile into the two accumulator chains. xc: this lane's
// token row at the chunk's first column plus 2 * tig; the B fragment of
// k-tile kt is x[k 16kt + 2tig, +1] and x[k 16kt + 8 + 2tig, +1], so the
// eight words sit 8 halfs apart.
template <typename T, int GS>
__device__ __forceinline__ void chunk_mma(float (&acc)[2][4], const uint4& q4, const uint2 (&s)[GS], const T* xc) {
  uint32_t b[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) b[j] = __ldg(reinterpret_cast<const unsigned int*>(xc + 8 * j));
  const uint32_t words[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
  for (int kt = 0; kt < 4; ++kt) {
    const uint2 sw = s[GS == 1 ? 0 : GS == 2 ? kt >> 1 : kt];
    // Row gid's scale/zb in both halves (x), row gid+8's (y).
    const uint32_t sA = __byte_perm(sw.x, 0, 0x1010), sB = __byte_perm(sw.x, 0, 0x3232);
    const uint32_t zA = __byte_perm(sw.y, 0, 0x1010), zB = __byte_perm(sw.y, 0, 0x3232);
    const uint32_t q = words[kt];
    const uint32_t af[4] = {dequant_pair<T>(q, zA, sA), dequant_pair<T>(q >> 4, zB, sB),
                            dequant_pair<T>(q >> 8, zA, sA), dequant_pair<T>(q >> 12, zB, sB)};
    mma_16816<T>(acc[kt & 1], af, b[2 * kt], b[2 * kt + 1]);
  }
}

// Tile t's chunks [cs, ce) are in acc: this warp's share of the tile
// (flush_split_tile, w4a16_gemv_common.cuh; the units are (tile, chunk)
// pairs, tile-major).
template <typename T>
__device__ __forceinline__ void flush_tile(const StreamArgs& p, int64_t w, int64_t t, int64_t cs, int64_t ce,
                                           const float (&acc)[2][4], int lane) {
  float a[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) a[e] = acc[0][e] + acc[1][e];
  flush_split_tile<T>(p, t, t * p.chunks, p.per_warp, w, cs, ce, a, lane);
}

template <typename T, int GS>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm) k_w4_gemv_stream(StreamArgs p) {
  constexpr int D = Ring<GS>::D;
  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t lo = w * p.per_warp, hi = min(lo + p.per_warp, p.total);
  if (lo >= hi) return;  // no barrier below: idle warps may leave

  // Load cursor: tile lt = (n-block lt / 8, warp tile lt % 8), chunk lc.
  int64_t lt = lo / p.chunks, lc = lo - lt * p.chunks, lf = lo;
  uint4 q[D];
  uint2 s[D][GS];
  auto load_next = [&](int u) {
    if (lf < hi) {
      const int64_t nb = lt >> 3;
      const int wt = static_cast<int>(lt & 7);
      q[u] = load_streaming(p.qw + (nb * p.chunks + lc) * 256 + wt * 32 + lane);
      const uint2* sp = p.sz + nb * p.n_groups * 64 + wt * 8 + gid;
#pragma unroll
      for (int g = 0; g < GS; ++g) {
        // Padding columns past K may fall past the last group: they multiply
        // zero activations, so any valid scale word will do.
        const int64_t grp = min((lc * 64 + g * (64 / GS)) >> p.gs_shift, p.n_groups - 1);
        s[u][g] = __ldg(sp + grp * 64);
      }
    }
    ++lf;
    if (++lc == p.chunks) {
      lc = 0;
      ++lt;
    }
  };
#pragma unroll
  for (int u = 0; u < D; ++u) load_next(u);

  // Compute cursor: tile ct, chunk cc, this warp's first chunk of it cs.
  int64_t ct = lo / p.chunks, cc = lo - ct * p.chunks, cs = cc;
  const T* xrow = static_cast<const T*>(p.x) + min(gid, p.M - 1) * p.ldx + 2 * tig;
  float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
  for (int64_t f = lo; f < hi; f += D) {
#pragma unroll
    for (int u = 0; u < D; ++u) {
      if (f + u < hi) {
        chunk_mma<T, GS>(acc, q[u], s[u], xrow + cc * 64);
        load_next(u);  // slot u is free again: its next chunk's loads go out now
        if (++cc == p.chunks || f + u + 1 == hi) {
          flush_tile<T>(p, w, ct, cs, cc, acc, lane);
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[0][e] = acc[1][e] = 0.f;
          ++ct;
          cc = cs = 0;
        }
      }
    }
  }
}

template <typename T, int GS>
int resident_blocks_per_sm() {
  static std::atomic<int> cached{0};
  int n = cached.load(std::memory_order_relaxed);
  if (n == 0) {
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_w4_gemv_stream<T, GS>, kThreads, 0) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    n = std::max(n, 1);
    cached.store(n, std::memory_order_relaxed);
  }
  return n;
}

int scale_words_per_chunk(const W4Layout& L) { return L.gs_shift >= 6 ? 1 : 64 >> L.gs_shift; }

template <typename T>
int resident_blocks(const W4Layout& L) {
  const int gs = scale_words_per_chunk(L);
  return gs == 1 ? resident_blocks_per_sm<T, 1>() : gs == 2 ? resident_blocks_per_sm<T, 2>()
                                                            : resident_blocks_per_sm<T, 4>();
}

}  // namespace

W4GemvStreamPlan w4_gemv_stream_plan(const W4Layout& L, int64_t M, bool is_f16, int sm_count,
                                     int max_blocks_per_sm) {
  int per_sm = is_f16 ? resident_blocks<__half>(L) : resident_blocks<__nv_bfloat16>(L);
  if (max_blocks_per_sm > 0) per_sm = std::min(per_sm, max_blocks_per_sm);
  const int64_t warps = static_cast<int64_t>(std::max(sm_count, 1)) * per_sm * kWarps;
  const int64_t tiles = L.n_blocks * kWarps;
  const int64_t total = tiles * L.chunks;
  W4GemvStreamPlan plan;
  plan.per_warp = std::max<int64_t>(1, (total + warps - 1) / warps);
  const int64_t used_warps = (total + plan.per_warp - 1) / plan.per_warp;
  plan.blocks = static_cast<int>((used_warps + kWarps - 1) / kWarps);
  // A tile's chunks [t C, t C + C) meet at most ceil((C - 1) / L) + 1 ranges.
  plan.max_contrib = static_cast<int>((L.chunks - 1 + plan.per_warp - 1) / plan.per_warp + 1);
  // Ranges that are whole multiples of a tile's chunks never split a tile.
  const bool shared_tiles = plan.per_warp % L.chunks != 0;
  plan.workspace_floats = shared_tiles ? tiles * plan.max_contrib * M * 16 : 0;
  plan.counters = shared_tiles ? tiles : 0;
  return plan;
}

cudaError_t w4_gemv_stream(const W4Layout& L, const W4GemvStreamPlan& plan, const uint4* qw, const uint2* sz,
                           bool is_f16, const void* x, int64_t ldx, int64_t M, void* y, const void* bias,
                           DType bias_type, float* partial, int* counters, cudaStream_t stream) {
  if (M < 1 || M > kW4GemvMaxM || plan.blocks < 1 || plan.per_warp < 1) return cudaErrorInvalidValue;
  if (plan.counters > 0 && (!partial || !counters)) return cudaErrorInvalidValue;
  StreamArgs a{};
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
  a.total = L.n_blocks * kWarps * L.chunks;
  a.per_warp = plan.per_warp;
  a.max_contrib = plan.max_contrib;
  a.gs_shift = L.gs_shift;
  const int gs = scale_words_per_chunk(L);
  const dim3 grid(static_cast<unsigned>(plan.blocks));
  if (is_f16) {
    if (gs == 1)
      k_w4_gemv_stream<__half, 1><<<grid, kThreads, 0, stream>>>(a);
    else if (gs == 2)
      k_w4_gemv_stream<__half, 2><<<grid, kThreads, 0, stream>>>(a);
    else
      k_w4_gemv_stream<__half, 4><<<grid, kThreads, 0, stream>>>(a);
  } else {
    if (gs == 1)
      k_w4_gemv_stream<__nv_bfloat16, 1><<<grid, kThreads, 0, stream>>>(a);
    else if (gs == 2)
      k_w4_gemv_stream<__nv_bfloat16, 2><<<grid, kThreads, 0, stream>>>(a);
    else
      k_w4_gemv_stream<__nv_bfloat16, 4><<<grid, kThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace xqcuda
