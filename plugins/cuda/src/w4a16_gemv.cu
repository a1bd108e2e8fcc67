// w4a16_gemv.cu: the W4A16 GEMV for decode batches (M <= 8).
//
// Reads the stored "cuda-w4a16-mma" layout as it is (no repack). Each lane's
// 16 bytes of a (16-row tile, 64-column chunk) are already its four
// mma.m16n8k16 A fragments, and a warp's 32 lanes are 512 contiguous bytes,
// so one warp owns one tile and streams its chunks straight from global
// memory into registers: no shared-memory staging of the weights and no
// barrier per chunk (the fused GEMM in w4a16_gemm.cu stages them through a
// cp.async pipeline instead). A warp holds two register batches of chunks
// (codes plus scale words) and issues one batch's loads before it computes
// on the other, so loads stay in flight while it does the math.
//
// The tokens are the mma B operand (one n8 tile, rows past M repeat row
// M - 1 and are never stored; mma columns are independent). The block's
// slice of x sits in shared memory, loaded once, and is read with ldmatrix.
// Dequantization is ((nibble | magic) - zb) * scale in the 16-bit type (one
// LOP3, one HSUB2, one HMUL2 per pair), the magic-number int4 -> 16-bit trick
// of Marlin's dequant (vLLM csrc/quantization/gptq_marlin/dequant.h) with
// the zero point and the +8 offset folded into zb when the layout is packed;
// accumulation is F32 in the mma.
//
// A block is 8 warps = one 128-row n-block over `chunks_per_split` chunks;
// short-N shapes split K over blocks. Partials go to an F32 workspace and the
// last block of each n-block to finish (an atomic counter, reset by that
// block) sums them and writes y with the bias: one launch in all, as in
// CUDA's threadFenceReduction sample.
#include "common.cuh"
#include "w4a16_gemv.hpp"
#include "w4a16_gemv_common.cuh"

#include <algorithm>
#include <type_traits>

namespace xqcuda {
namespace {
using namespace w4gemv;

constexpr int kWarps = 8;  // one warp per 16-row tile: a block is one n-block of the layout
constexpr int kThreads = kWarps * 32;

struct GemvArgs {
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
  int64_t N, n_blocks, n_groups, chunks;
  int chunks_per_split;
  int gs_shift;
};

// GS: scale words per chunk (1 for groups of >= 64 columns, 2 for 32, 4 for
// 16). B: register batches per warp. U: chunks per batch. With B = 2 ("v2")
// the next batch's loads are in flight while the warp computes on the other;
// B = 1 ("v1", XQUANT_CUDA_W4_GEMV_VARIANT=1, kept for measurements) issues
// one batch of twice as many chunks, then computes on all of it.
template <int GS, int B>
struct Unroll {
  static constexpr int U = (GS == 1 ? 8 : 4) / B;
};

template <typename T, int GS>
__device__ __forceinline__ void chunk_mma(float (&acc)[2][4], const uint4& q4, const uint2 (&s)[GS], const T* xlane,
                                          int col) {
  const uint32_t words[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
  for (int kp = 0; kp < 2; ++kp) {  // k-tiles 2kp and 2kp+1: one ldmatrix.x4 of x
    uint32_t b[4];
    const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(xlane + col + kp * 32));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(a));
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int kt = kp * 2 + h;
      const uint2 sw = s[GS == 1 ? 0 : GS == 2 ? kt >> 1 : kt];
      // Row gid's scale/zb in both halves (x), row gid+8's (y).
      const uint32_t sA = __byte_perm(sw.x, 0, 0x1010), sB = __byte_perm(sw.x, 0, 0x3232);
      const uint32_t zA = __byte_perm(sw.y, 0, 0x1010), zB = __byte_perm(sw.y, 0, 0x3232);
      const uint32_t q = words[kt];
      const uint32_t af[4] = {dequant_pair<T>(q, zA, sA), dequant_pair<T>(q >> 4, zB, sB),
                              dequant_pair<T>(q >> 8, zA, sA), dequant_pair<T>(q >> 12, zB, sB)};
      mma_16816<T>(acc[h], af, b[2 * h], b[2 * h + 1]);  // two chains: half the mma latency in series
    }
  }
}

template <typename T, int GS, int B>
__global__ void __launch_bounds__(kThreads, 3) k_w4_gemv(GemvArgs p) {
  constexpr int U = Unroll<GS, B>::U;
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ bool last_block;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const int64_t nb = blockIdx.x;
  const int split = blockIdx.y;
  const int64_t c0 = static_cast<int64_t>(split) * p.chunks_per_split;
  const int nch = static_cast<int>(min(static_cast<int64_t>(p.chunks_per_split), p.chunks - c0));
  const uint4* wp = p.qw + (nb * p.chunks + c0) * 256 + warp * 32 + lane;  // + 256 per chunk
  const uint2* sp = p.sz + nb * p.n_groups * 64 + warp * 8 + gid;           // + 64 per group
  auto group_of = [&](int ci, int slot) -> int64_t {
    // Padding columns past K may fall past the last group: they multiply
    // zero activations, so any valid scale word will do.
    return min(((c0 + ci) * 64 + slot * (64 / GS)) >> p.gs_shift, p.n_groups - 1);
  };

  // Two register batches of U chunks (codes and scale words). The first
  // two batches' loads go out before x is staged.
  uint4 q[B][U];
  uint2 s[B][U][GS];
  auto load_batch = [&](int buf, int cb) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (cb + u < nch) {
        q[buf][u] = load_streaming(wp + static_cast<int64_t>(cb + u) * 256);
#pragma unroll
        for (int g = 0; g < GS; ++g) s[buf][u][g] = __ldg(sp + group_of(cb + u, g) * 64);
      }
    }
  };
  auto compute_batch = [&](float (&acc)[2][4], int buf, int cb, const T* xlane) {
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (cb + u < nch) chunk_mma<T, GS>(acc, q[buf][u], s[buf][u], xlane, (cb + u) * 64);
  };
  load_batch(0, 0);
  if constexpr (B == 2) load_batch(1, U);

  // x[m][c0*64 ..) for m < M into shared memory, rows padded by 8 halfs so
  // the 8 row addresses of an ldmatrix hit distinct banks.
  const int xstride = nch * 64 + 8;
  T* xs = reinterpret_cast<T*>(smem);
  const int row_pieces = nch * 8;  // 16-byte pieces per row
  for (int i = threadIdx.x; i < p.M * row_pieces; i += kThreads) {
    const int r = i / row_pieces, c = i % row_pieces;
    const uint4 v = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + r * p.ldx + c0 * 64 + c * 8);
    *reinterpret_cast<uint4*>(xs + r * xstride + c * 8) = v;
  }
  __syncthreads();
  // ldmatrix.x4 row addresses: lanes 0-7 give token rows of k 0-7 of k-tile
  // 2kp, 8-15 its k 8-15, 16-31 the same for k-tile 2kp+1.
  const T* xlane = xs + min(lane & 7, p.M - 1) * xstride + ((lane >> 3) & 1) * 8 + (lane >> 4) * 16;

  float acc2[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
  for (int cb = 0; cb < nch; cb += B * U) {
    compute_batch(acc2, 0, cb, xlane);
    load_batch(0, cb + B * U);  // predicated off past nch
    if constexpr (B == 2) {
      compute_batch(acc2, 1, cb + U, xlane);
      load_batch(1, cb + 3 * U);
    }
  }
  float acc[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) acc[e] = acc2[0][e] + acc2[1][e];

  // acc: rows gid (0, 1) and gid + 8 (2, 3) of the tile; tokens 2*tig, 2*tig + 1.
  const int64_t row0 = nb * 128 + warp * 16 + gid;
  if (gridDim.y == 1) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t n = row0 + (e >= 2 ? 8 : 0);
      const int m = 2 * tig + (e & 1);
      if (n < p.N && m < p.M) {
        const float bb = p.bias ? load_as_float(p.bias, p.bias_type, n) : 0.f;
        store_from_float(p.y, std::is_same_v<T, __half> ? DType::F16 : DType::BF16, m * p.N + n, acc[e] + bb);
      }
    }
    return;
  }
  const int64_t n_pad = p.n_blocks * 128;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int m = 2 * tig + (e & 1);
    if (m < p.M) p.partial[(static_cast<int64_t>(split) * p.M + m) * n_pad + row0 + (e >= 2 ? 8 : 0)] = acc[e];
  }
  __threadfence();  // this block's partials are visible before its arrival is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    const int arrived = atomicAdd(p.counters + nb, 1);
    last_block = arrived == static_cast<int>(gridDim.y) - 1;
    if (last_block) p.counters[nb] = 0;  // ready for the next launch
  }
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int i = threadIdx.x; i < p.M * 128; i += kThreads) {
    const int m = i >> 7;
    const int64_t n = nb * 128 + (i & 127);
    if (n >= p.N) continue;
    float v = 0.f;
    for (int sp_i = 0; sp_i < static_cast<int>(gridDim.y); ++sp_i)
      v += __ldcg(p.partial + (static_cast<int64_t>(sp_i) * p.M + m) * n_pad + n);
    if (p.bias) v += load_as_float(p.bias, p.bias_type, n);
    store_from_float(p.y, std::is_same_v<T, __half> ? DType::F16 : DType::BF16, m * p.N + n, v);
  }
}

template <typename T, int B>
cudaError_t launch(const GemvArgs& a, const W4GemvPlan& plan, int64_t n_blocks, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n_blocks), static_cast<unsigned>(plan.splits));
  const size_t smem = static_cast<size_t>(a.M) * (plan.chunks_per_split * 64 + 8) * sizeof(T);
  const int gs = a.gs_shift >= 6 ? 1 : 64 >> a.gs_shift;
  if (gs == 1)
    k_w4_gemv<T, 1, B><<<grid, kThreads, smem, stream>>>(a);
  else if (gs == 2)
    k_w4_gemv<T, 2, B><<<grid, kThreads, smem, stream>>>(a);
  else
    k_w4_gemv<T, 4, B><<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

W4GemvPlan w4_gemv_plan(const W4Layout& L, int64_t M, int sm_count, int blocks_per_sm) {
  // Enough blocks that the last wave's tail is short (about 12 per SM; the
  // blocks are small: 8 warps, at most 32 KB of x), but every warp streams
  // at least 4 chunks (2 KB) and at most 32 (so x fits in 32 KB of shared
  // memory at M = 8), and the partials (splits x M x N floats, written and
  // read once) stay under 1/16 of the weight bytes.
  const int64_t want = (static_cast<int64_t>(blocks_per_sm) * sm_count + L.n_blocks - 1) / L.n_blocks;
  const int64_t by_partials = std::max<int64_t>(1, (L.chunks * 64) / (128 * M));
  int64_t splits = std::min({want, std::max<int64_t>(1, L.chunks / 4), by_partials});
  splits = std::max<int64_t>(splits, (L.chunks + 31) / 32);
  int64_t cps = (L.chunks + splits - 1) / splits;
  splits = (L.chunks + cps - 1) / cps;  // no empty split
  W4GemvPlan plan;
  plan.splits = static_cast<int>(splits);
  plan.chunks_per_split = static_cast<int>(cps);
  plan.workspace_floats = splits > 1 ? splits * M * L.n_blocks * 128 : 0;
  plan.counters = splits > 1 ? L.n_blocks : 0;
  return plan;
}

cudaError_t w4_gemv(const W4Layout& L, const W4GemvPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                    const void* x, int64_t ldx, int64_t M, void* y, const void* bias, DType bias_type, float* partial,
                    int* counters, cudaStream_t stream) {
  if (M < 1 || M > kW4GemvMaxM || plan.chunks_per_split < 1 || L.n_blocks > 0x7fffffffLL || plan.splits > 65535)
    return cudaErrorInvalidValue;
  if (plan.splits > 1 && (!partial || !counters)) return cudaErrorInvalidValue;
  GemvArgs a{};
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
  a.n_blocks = L.n_blocks;
  a.n_groups = L.n_groups;
  a.chunks = L.chunks;
  a.chunks_per_split = plan.chunks_per_split;
  a.gs_shift = L.gs_shift;
  if (plan.batches == 1)
    return is_f16 ? launch<__half, 1>(a, plan, L.n_blocks, stream)
                  : launch<__nv_bfloat16, 1>(a, plan, L.n_blocks, stream);
  return is_f16 ? launch<__half, 2>(a, plan, L.n_blocks, stream)
                : launch<__nv_bfloat16, 2>(a, plan, L.n_blocks, stream);
}

}  // namespace xqcuda
