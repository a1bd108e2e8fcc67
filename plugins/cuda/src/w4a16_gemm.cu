// w4a16_gemm.cu: the fused W4A16 GEMM/GEMV (decode to mid-size M).
//
// Computes y^T = W · x^T on mma.sync.m16n8k16 with the weights as the A
// operand (16 output rows per tile) and the tokens as B (8 per tile), so a
// decode step (M = 1..8) wastes no weight bandwidth: every weight byte is
// loaded once, with one 16-byte streaming load per lane per 64 columns, and
// dequantized in registers straight into A fragments ((nibble|magic - zb) *
// scale in the 16-bit type; two integer ops and two half ops per pair).
// Warps split K inside a block (reduced through shared memory) and, when the
// grid would not fill the GPU, blocks split K too (f32 partials + a reduce
// kernel). Token tiles are the fastest grid axis so blocks sharing weights
// run together and re-read them from L2.
//
// The same kernel runs a mixture-of-experts Linear (MOE = true): the token
// axis walks routing slots sorted by expert and padded per expert to whole
// token tiles (moe_align in moe_routing.cu, as vLLM's moe_align_block_size),
// each block reads its expert's weights through a pointer table, gathers its
// activation rows by slot and writes each output row at its slot. All
// experts thus run in one launch.
#include "common.cuh"

#include <algorithm>

namespace xqcuda {
namespace {

template <typename T>
struct W4Traits;
template <>
struct W4Traits<__nv_bfloat16> {
  static constexpr uint32_t kMagic = 0x43004300u;  // bf16 128.0 in both halves
};
template <>
struct W4Traits<__half> {
  static constexpr uint32_t kMagic = 0x64006400u;  // f16 1024.0 in both halves
};

template <typename T>
__device__ __forceinline__ uint32_t dq_pair(uint32_t q, uint32_t zb, uint32_t s);

template <>
__device__ __forceinline__ uint32_t dq_pair<__nv_bfloat16>(uint32_t q, uint32_t zb, uint32_t s) {
  uint32_t v = (q & 0x000F000Fu) | W4Traits<__nv_bfloat16>::kMagic;
  __nv_bfloat162 r = __hmul2(__hsub2(*reinterpret_cast<__nv_bfloat162*>(&v), *reinterpret_cast<__nv_bfloat162*>(&zb)),
                             *reinterpret_cast<__nv_bfloat162*>(&s));
  return *reinterpret_cast<uint32_t*>(&r);
}
template <>
__device__ __forceinline__ uint32_t dq_pair<__half>(uint32_t q, uint32_t zb, uint32_t s) {
  uint32_t v = (q & 0x000F000Fu) | W4Traits<__half>::kMagic;
  __half2 r = __hmul2(__hsub2(*reinterpret_cast<__half2*>(&v), *reinterpret_cast<__half2*>(&zb)),
                      *reinterpret_cast<__half2*>(&s));
  return *reinterpret_cast<uint32_t*>(&r);
}

template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                 uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

struct GemmArgs {
  const uint4* qw;
  const uint2* sz;
  const void* x;
  int64_t ldx;
  void* y;
  DType y_type;
  const void* bias;
  DType bias_type;
  float* partial;
  int64_t M, N, n_tiles, n_groups, chunks, chunks_per_split;
  int gs_shift;
  int splits;
  // MoE only: slot per sorted row (n_slots = padding), expert per token
  // block (-1 = past the used blocks), per-expert weight tables; a slot's
  // activation row is slot / x_div.
  const int32_t* sorted;
  const int32_t* block_expert;
  const uint4* const* qw_table;
  const uint2* const* sz_table;
  int64_t n_slots;
  int64_t x_div;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = pred ? 16 : 0;  // 0 source bytes: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Shared-memory stage: [W*NT tiles x 32 lanes] uint4 weights, [4 group
// slots][W*NT tiles][8] uint2 scale words, [MT*8 rows][kXStride] x.
constexpr int kXStride = 72;  // 64 + 8 halfs: conflict-free 32-bit B-fragment reads

template <int MT, int NT, int W>
struct StageLayout {
  static constexpr int kTiles = W * NT;
  static constexpr int kWBytes = kTiles * 32 * 16;
  static constexpr int kSBytes = 4 * kTiles * 64;
  static constexpr int kXBytes = MT * 8 * kXStride * 2;
  static constexpr int kBytes = kWBytes + kSBytes + kXBytes;
};

// All W warps of a block walk the same K chunks (64 columns each) through an
// S-stage cp.async pipeline; warp w owns n-tiles [w*NT, w*NT+NT) of the
// block's W*NT tiles. Split-K across blocks via blockIdx.z.
template <typename T, int MT, int NT, int W, int S, bool MOE>
__global__ void __launch_bounds__(W * 32) k_w4_gemm(GemmArgs p) {
  using L = StageLayout<MT, NT, W>;
  static_assert(L::kTiles % 8 == 0, "a block covers whole 8-tile n-blocks of the layout");
  constexpr int NB = L::kTiles / 8;  // n-blocks per GEMM block
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const int64_t tok0 = static_cast<int64_t>(blockIdx.x) * (MT * 8);
  const uint4* qw = p.qw;
  const uint2* sz = p.sz;
  if constexpr (MOE) {
    const int e = p.block_expert[blockIdx.x];
    if (e < 0) return;  // the whole block: no barrier has been reached yet
    qw = p.qw_table[e];
    sz = p.sz_table[e];
  }
  // Output/activation row of token-axis index m (MoE: its slot; -1 = none).
  auto row_of = [&](int64_t m) -> int64_t {
    if constexpr (MOE) {
      const int64_t slot = p.sorted[m];
      return slot < p.n_slots ? slot : -1;
    } else {
      return m < p.M ? m : -1;
    }
  };
  const int64_t tile0 = static_cast<int64_t>(blockIdx.y) * L::kTiles;
  const int64_t cbeg = static_cast<int64_t>(blockIdx.z) * p.chunks_per_split;
  const int64_t cend = min(cbeg + p.chunks_per_split, p.chunks);
  const int64_t nchunks = cend > cbeg ? cend - cbeg : 0;
  const bool small_groups = p.gs_shift < 6;
  const int gslots = small_groups ? (64 >> p.gs_shift) : 1;
  // Stage: weights | gslots scale slots | x (only the slots this group size needs).
  const int s_bytes = gslots * L::kTiles * 64;
  const int stage_bytes = L::kWBytes + s_bytes + L::kXBytes;

  // Per-thread cp.async pieces are loop-invariant; only the chunk changes.
  constexpr int kThreads = W * 32;
  constexpr int kWPieces = L::kTiles * 32 / kThreads;         // 16-byte weight pieces per thread
  constexpr int kXPieces = (MT * 64 + kThreads - 1) / kThreads;  // 16-byte x pieces per thread
  const int64_t nb0 = static_cast<int64_t>(blockIdx.y) * NB;
  const int64_t n_blocks = (p.n_tiles + 7) / 8;
  const uint4* wsrc0[kWPieces];
  bool wok[kWPieces];
#pragma unroll
  for (int j = 0; j < kWPieces; ++j) {
    const int i = threadIdx.x + j * kThreads;
    const int64_t nb = nb0 + i / 256;
    wok[j] = nb < n_blocks;
    wsrc0[j] = qw + (wok[j] ? nb : 0) * p.chunks * 256 + (i % 256);
  }
  const int s_piece = threadIdx.x % (L::kTiles * 4);  // 32 pieces of 16 bytes per n-block and group slot
  const int s_slot = threadIdx.x / (L::kTiles * 4);
  const bool s_active = s_slot < gslots;
  const int64_t s_nb = nb0 + s_piece / 32;
  const bool s_ok = s_nb < n_blocks;
  const uint8_t* ssrc0 =
      reinterpret_cast<const uint8_t*>(sz + (s_ok ? s_nb : 0) * p.n_groups * 64) + (s_piece % 32) * 16;
  const int64_t s_koff = small_groups ? static_cast<int64_t>(s_slot) << p.gs_shift : 0;
  const T* xsrc[kXPieces];
  int xdst[kXPieces];
  bool xok[kXPieces], xact[kXPieces];
#pragma unroll
  for (int j = 0; j < kXPieces; ++j) {
    const int i = threadIdx.x + j * kThreads;
    const int r = i >> 3, q = i & 7;
    xact[j] = i < MT * 64;
    const int64_t row = xact[j] ? row_of(tok0 + r) : -1;
    xok[j] = row >= 0;
    xsrc[j] = static_cast<const T*>(p.x) + (xok[j] ? row / (MOE ? p.x_div : 1) : 0) * p.ldx + q * 8;
    xdst[j] = (r * kXStride + q * 8) * 2;
  }
  auto load_stage = [&](int64_t ci, int stage) {
    uint8_t* base = smem + stage * stage_bytes;
    const int64_t c = cbeg + ci;
    uint4* ws = reinterpret_cast<uint4*>(base);
#pragma unroll
    for (int j = 0; j < kWPieces; ++j) cp_async16(ws + threadIdx.x + j * kThreads, wsrc0[j] + c * 256, wok[j]);
    if (s_active) {
      // Padding columns past K can fall past the last group (group 16,
      // K = 1000: column 1008 is group 63 of 63); they multiply zero
      // activations, so the last group's words do, where reading past the
      // n-block's words gave NaN in F16 (Cuda/W4A16Gemv.*, M = 9).
      const int64_t g = min((c * 64 + s_koff) >> p.gs_shift, p.n_groups - 1);
      cp_async16(base + L::kWBytes + s_slot * L::kTiles * 64 + s_piece * 16, ssrc0 + g * 512, s_ok);
    }
    uint8_t* xs = base + L::kWBytes + s_bytes;
#pragma unroll
    for (int j = 0; j < kXPieces; ++j)
      if (xact[j]) cp_async16(xs + xdst[j], xsrc[j] + c * 64, xok[j]);
  };

  float acc[NT][MT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int j = 0; j < MT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < nchunks) load_stage(s, s);
    cp_async_commit();
  }
  for (int64_t ci = 0; ci < nchunks; ++ci) {
    cp_async_wait<S - 2>();
    __syncthreads();
    if (ci + S - 1 < nchunks) load_stage(ci + S - 1, static_cast<int>((ci + S - 1) % S));
    cp_async_commit();
    const uint8_t* base = smem + static_cast<int>(ci % S) * stage_bytes;
    const uint4* ws = reinterpret_cast<const uint4*>(base);
    const uint2* ss = reinterpret_cast<const uint2*>(base + L::kWBytes);
    const T* xs = reinterpret_cast<const T*>(base + L::kWBytes + s_bytes);
    uint4 wq[NT];
    uint32_t sA[NT], sB[NT], zA[NT], zB[NT];
#pragma unroll
    for (int i = 0; i < NT; ++i) wq[i] = ws[(warp * NT + i) * 32 + lane];
#pragma unroll
    for (int kt = 0; kt < 4; ++kt) {
      const int slot = small_groups ? ((kt * 16) >> p.gs_shift) : 0;
      uint32_t b[MT][2];
      // ldmatrix: lanes 0-7 address rows of matrix 0 (k 0-7), 8-15 matrix 1
      // (k 8-15), 16-31 the same for the next token tile.
#pragma unroll
      for (int mt = 0; mt < MT; mt += 2) {
        if constexpr (MT == 1) {
          const T* xr = xs + (lane & 7) * kXStride + kt * 16 + ((lane >> 3) & 1) * 8;
          const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(xr));
          asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                       : "=r"(b[0][0]), "=r"(b[0][1])
                       : "r"(a));
        } else {
          const T* xr = xs + ((mt + (lane >> 4)) * 8 + (lane & 7)) * kXStride + kt * 16 + ((lane >> 3) & 1) * 8;
          const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(xr));
          asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                       : "=r"(b[mt][0]), "=r"(b[mt][1]), "=r"(b[mt + 1][0]), "=r"(b[mt + 1][1])
                       : "r"(a));
        }
      }
      if (kt == 0 || small_groups) {
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          const uint2 sw = ss[(slot * L::kTiles + warp * NT + i) * 8 + gid];
          sA[i] = __byte_perm(sw.x, 0, 0x1010);
          sB[i] = __byte_perm(sw.x, 0, 0x3232);
          zA[i] = __byte_perm(sw.y, 0, 0x1010);
          zB[i] = __byte_perm(sw.y, 0, 0x3232);
        }
      }
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        const uint32_t q = kt == 0 ? wq[i].x : kt == 1 ? wq[i].y : kt == 2 ? wq[i].z : wq[i].w;
        const uint32_t a0 = dq_pair<T>(q, zA[i], sA[i]);
        const uint32_t a1 = dq_pair<T>(q >> 4, zB[i], sB[i]);
        const uint32_t a2 = dq_pair<T>(q >> 8, zA[i], sA[i]);
        const uint32_t a3 = dq_pair<T>(q >> 12, zB[i], sB[i]);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) mma16816<T>(acc[i][mt], a0, a1, a2, a3, b[mt][0], b[mt][1]);
      }
    }
  }
  cp_async_wait<0>();

  const int64_t nt0 = tile0 + warp * NT;
#pragma unroll
  for (int i = 0; i < NT; ++i) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t n = (nt0 + i) * 16 + gid + (e >= 2 ? 8 : 0);
        const int64_t tm = tok0 + mt * 8 + 2 * tig + (e & 1);
        const int64_t m = MOE ? row_of(tm) : tm;
        const float v = acc[i][mt][e];
        if (nt0 + i < p.n_tiles && n < p.N && m >= 0 && m < p.M) {
          if (p.splits > 1) {
            p.partial[(static_cast<int64_t>(blockIdx.z) * p.M + m) * p.N + n] = v;
          } else {
            const float bb = p.bias ? load_as_float(p.bias, p.bias_type, n) : 0.f;
            store_from_float(p.y, p.y_type, m * p.N + n, v + bb);
          }
        }
      }
    }
  }
}

__global__ void k_split_reduce(const float* __restrict__ partial, int splits, int64_t M, int64_t N, const void* bias,
                               DType bias_type, void* y, DType y_type) {
  const int64_t total = M * N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += partial[s * total + idx];
    if (bias) v += load_as_float(bias, bias_type, idx % N);
    store_from_float(y, y_type, idx, v);
  }
}

// Per token-tile count: NT n-tiles per warp, W warps, S pipeline stages.
template <int MT>
struct Shape;
template <>
struct Shape<1> { static constexpr int NT = 2, W = 4, S = 4; };
template <>
struct Shape<2> { static constexpr int NT = 2, W = 8, S = 4; };
template <>
struct Shape<4> { static constexpr int NT = 2, W = 8, S = 4; };
template <>
struct Shape<8> { static constexpr int NT = 1, W = 8, S = 4; };

template <typename T, int MT, bool MOE = false>
cudaError_t launch(const W4Layout& L, const W4GemmPlan& plan, GemmArgs a, cudaStream_t stream,
                   int64_t token_blocks = 0) {
  using Sh = Shape<MT>;
  using SL = StageLayout<MT, Sh::NT, Sh::W>;
  const int64_t tiles_per_block = SL::kTiles;  // == 8: one n-block
  dim3 grid(static_cast<unsigned>(MOE ? token_blocks : (a.M + MT * 8 - 1) / (MT * 8)),
            static_cast<unsigned>((L.n_tiles + tiles_per_block - 1) / tiles_per_block),
            static_cast<unsigned>(plan.splits));
  if (grid.y > 65535u) return cudaErrorInvalidConfiguration;
  const int gslots = L.gs_shift < 6 ? (64 >> L.gs_shift) : 1;
  const size_t smem = static_cast<size_t>(SL::kWBytes + gslots * SL::kTiles * 64 + SL::kXBytes) * Sh::S;
  auto kernel = k_w4_gemm<T, MT, Sh::NT, Sh::W, Sh::S, MOE>;
  static bool attr_set = false;  // per instantiation: allow the 4-slot maximum
  if (!attr_set) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(static_cast<size_t>(SL::kBytes) * Sh::S));
    if (e != cudaSuccess) return e;
    attr_set = true;
  }
  kernel<<<grid, Sh::W * 32, smem, stream>>>(a);
  return cudaGetLastError();
}

int tiles_per_block_for(int mt) {
  return mt == 1   ? Shape<1>::W * Shape<1>::NT
         : mt == 2 ? Shape<2>::W * Shape<2>::NT
         : mt == 4 ? Shape<4>::W * Shape<4>::NT
                   : Shape<8>::W * Shape<8>::NT;
}

}  // namespace

W4GemmPlan w4_gemm_plan(const W4Layout& L, int64_t M, int sm_count) {
  W4GemmPlan plan;
  plan.mt = M <= 8 ? 1 : M <= 16 ? 2 : M <= 32 ? 4 : 8;
  const int64_t tpb = tiles_per_block_for(plan.mt);
  const int64_t nblk = (L.n_tiles + tpb - 1) / tpb;
  const int64_t tblk = (M + plan.mt * 8 - 1) / (plan.mt * 8);
  const int64_t base = nblk * tblk;
  // Split K across blocks so about 8 blocks per SM are resident in one wave
  // (the weight stream's latency is hidden by many warps, not by one block's
  // pipeline), keeping at least 8 chunks (512 columns) per split.
  int64_t splits = (8LL * sm_count + base - 1) / base;
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, L.chunks / 8));
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 16));
  plan.splits = static_cast<int>(splits);
  plan.workspace_floats = splits > 1 ? splits * M * L.N : 0;
  return plan;
}

cudaError_t w4_gemm(const W4Layout& L, const W4GemmPlan& plan, const uint4* qw, const uint2* sz, bool is_f16,
                    const void* x, int64_t ldx, int64_t M, void* y, DType y_type, const void* bias, DType bias_type,
                    float* partial, cudaStream_t stream) {
  GemmArgs a{};
  a.qw = qw;
  a.sz = sz;
  a.x = x;
  a.ldx = ldx;
  a.y = y;
  a.y_type = y_type;
  a.bias = bias;
  a.bias_type = bias_type;
  a.partial = partial;
  a.M = M;
  a.N = L.N;
  a.n_tiles = L.n_tiles;
  a.n_groups = L.n_groups;
  a.chunks = L.chunks;
  a.splits = plan.splits;
  a.chunks_per_split = (L.chunks + plan.splits - 1) / plan.splits;
  a.gs_shift = L.gs_shift;
  cudaError_t e;
  switch (plan.mt) {
    case 1: e = is_f16 ? launch<__half, 1>(L, plan, a, stream) : launch<__nv_bfloat16, 1>(L, plan, a, stream); break;
    case 2: e = is_f16 ? launch<__half, 2>(L, plan, a, stream) : launch<__nv_bfloat16, 2>(L, plan, a, stream); break;
    case 4: e = is_f16 ? launch<__half, 4>(L, plan, a, stream) : launch<__nv_bfloat16, 4>(L, plan, a, stream); break;
    default: e = is_f16 ? launch<__half, 8>(L, plan, a, stream) : launch<__nv_bfloat16, 8>(L, plan, a, stream); break;
  }
  if (e != cudaSuccess || plan.splits <= 1) return e;
  k_split_reduce<<<blocks_for(M * L.N, 256), 256, 0, stream>>>(partial, plan.splits, M, L.N, bias, bias_type, y,
                                                               y_type);
  return cudaGetLastError();
}

int w4_moe_token_tiles(int64_t slots_per_expert) {
  return slots_per_expert <= 8 ? 1 : slots_per_expert <= 16 ? 2 : slots_per_expert <= 32 ? 4 : 8;
}

cudaError_t w4_moe_gemm(const W4Layout& L, int mt, const uint4* const* qw_table, const uint2* const* sz_table,
                        bool is_f16, const void* x, int64_t ldx, int64_t x_div, const int32_t* sorted,
                        const int32_t* block_expert, int64_t token_blocks, int64_t n_slots, void* y, DType y_type,
                        cudaStream_t stream) {
  GemmArgs a{};
  a.x = x;
  a.ldx = ldx;
  a.y = y;
  a.y_type = y_type;
  a.bias_type = DType::F32;
  a.M = n_slots;
  a.N = L.N;
  a.n_tiles = L.n_tiles;
  a.n_groups = L.n_groups;
  a.chunks = L.chunks;
  a.splits = 1;  // the experts' token blocks fill the GPU; no split-K
  a.chunks_per_split = L.chunks;
  a.gs_shift = L.gs_shift;
  a.sorted = sorted;
  a.block_expert = block_expert;
  a.qw_table = qw_table;
  a.sz_table = sz_table;
  a.n_slots = n_slots;
  a.x_div = x_div;
  W4GemmPlan plan;
  plan.mt = mt;
  if (token_blocks <= 0) return cudaSuccess;
  switch (mt) {
    case 1:
      return is_f16 ? launch<__half, 1, true>(L, plan, a, stream, token_blocks)
                    : launch<__nv_bfloat16, 1, true>(L, plan, a, stream, token_blocks);
    case 2:
      return is_f16 ? launch<__half, 2, true>(L, plan, a, stream, token_blocks)
                    : launch<__nv_bfloat16, 2, true>(L, plan, a, stream, token_blocks);
    case 4:
      return is_f16 ? launch<__half, 4, true>(L, plan, a, stream, token_blocks)
                    : launch<__nv_bfloat16, 4, true>(L, plan, a, stream, token_blocks);
    default:
      return is_f16 ? launch<__half, 8, true>(L, plan, a, stream, token_blocks)
                    : launch<__nv_bfloat16, 8, true>(L, plan, a, stream, token_blocks);
  }
}

}  // namespace xqcuda
