// prefill_attention.cu: causal attention of prefill chunks over the paged
// BF16 KV cache on the tensor cores (prefill_attention.hpp).
//
// The kernel follows FlashAttention-2 (Dao 2023, arXiv:2307.08691, Alg. 1;
// the reference implementation is csrc/flash_attn/src/flash_fwd_kernel.h in
// github.com/Dao-AILab/flash-attention): a CTA owns the query rows of a few
// consecutive positions of one sequence for every query head of one KV head
// (the GQA group), 128 rows (64 for MHA); each of its 4 warps keeps 32 (16)
// rows' running max m, sum l and output accumulator in registers, and walks
// the sequence's keys in tiles of 64: S = Q K^T and O += P V with mma.sync
// m16n8k16 (BF16 in, F32 accumulate), online softmax in between. Tiles past
// the CTA's last position are never visited. K/V tiles come from the block
// table through cp.async into two shared buffers (the next tile loads while
// this one is used). Shared rows are 16-byte chunks XOR-swizzled by row so
// that ldmatrix reads hit 8 distinct bank groups. Q is scaled by
// scale * log2(e) on its way to BF16, so the softmax uses exp2.
//
// Why 64 keys per tile and not 128: with 32 rows per warp, S for 128 keys
// is another 64 F32 registers per thread on top of O's 128 (D = 128), past
// the 255-register limit, and the shared K/V double buffer would grow to
// 128 KB, leaving one CTA per SM instead of two.
#include <cfloat>
#include <cstdlib>

#include "common.cuh"
#include "paged_table.cuh"
#include "prefill_attention.hpp"

namespace xqcuda {

namespace {

constexpr int kRows = static_cast<int>(kPrefillTileRows);  // query rows per CTA
constexpr int kKeys = 64;                                  // keys per K/V tile
constexpr int kThreads = 128;                              // 4 warps x 16 rows

using bf16 = __nv_bfloat16;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !valid.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a (16x16, row) * b (16x8, col), BF16 in, F32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// out[i], out[i + 1] = v0, v1 in one store (i even, so the pair is aligned).
__device__ __forceinline__ void store_pair(void* out, DType t, int64_t i, float v0, float v1) {
  switch (t) {
    case DType::F32: *reinterpret_cast<float2*>(static_cast<float*>(out) + i) = make_float2(v0, v1); break;
    case DType::F16: *reinterpret_cast<__half2*>(static_cast<__half*>(out) + i) = __floats2half2_rn(v0, v1); break;
    case DType::BF16:
      *reinterpret_cast<__nv_bfloat162*>(static_cast<bf16*>(out) + i) = __floats2bfloat162_rn(v0, v1);
      break;
    default: break;
  }
}

// Element offset of 16-byte chunk `c` of shared row `r` (rows of D elements).
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
  return r * D + ((c ^ (r & 7)) << 3);
}

// A tile is a prefill tile when each of its rows continues the one before:
// the next position of the same sequence, i.e. the same blocks for every key
// the earlier row sees (comparing the whole used table, not just its first
// block, keeps shared prefixes of different sequences apart).
__global__ void mark_prefill_tiles_kernel(RowTables tables, int64_t T, int64_t BS, int32_t* __restrict__ flags) {
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t n = min(static_cast<int64_t>(kRows), T - r0);
  const int i = threadIdx.x;
  int ok = 1;
  if (i > 0 && i < n) {
    const int32_t cur_p = tables.position(r0 + i), prev_p = tables.position(r0 + i - 1);
    ok = prev_p >= 0 && cur_p == prev_p + 1 && cur_p / BS + 1 <= tables.width();
    const int32_t* cur = tables.blocks(r0 + i);
    const int32_t* prev = tables.blocks(r0 + i - 1);
    const int64_t used = prev_p / BS + 1;  // blocks the earlier row reads
    // One table per sequence: rows of one sequence share the pointer.
    for (int64_t b = 0; ok && cur != prev && b < used; ++b) ok = cur[b] == prev[b];
  }
  ok = __syncthreads_and(ok);
  if (i == 0) flags[blockIdx.x] = ok && n >= kPrefillMinRows && tables.position(r0) >= 0 ? 1 : 0;
}

// Rows of one CTA: 16 * MT per warp (MT m16 tiles), head-major over HC
// query heads: CTA row r is query head blockIdx.x * HC + r / P at position
// p0 + r % P, where P (a power of two dividing kPrefillTileRows) positions
// times HC heads fill at most the CTA's rows. With HC = the GQA group, the
// group's heads share every K/V tile, so a tile is read from memory once per
// group instead of once per query head (the head-group fusion of
// FlashInfer, include/flashinfer/attention/prefill.cuh), and all warps see
// the same P <= 64 positions, so at most two key tiles need the causal mask.
// HC = 1 is one query head per CTA (PrefillCta::PerHead).
template <int D, int MT>
__global__ void __launch_bounds__(kThreads, MT == 2 ? 2 : 1) prefill_attention_kernel(
    const float* __restrict__ q, const bf16* __restrict__ kpool, const bf16* __restrict__ vpool,
    RowTables tables, int64_t T, int64_t H, int64_t KVH, int64_t BS, int HC, int log_p,
    float q_scale, const int32_t* __restrict__ flags, void* __restrict__ out, DType ot) {
  constexpr int CH = D / 8;  // 16-byte chunks per row
  constexpr int R = 64 * MT; // CTA rows
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [R][D]
  bf16* sK = sQ + R * D;                         // [2][kKeys][D]
  bf16* sV = sK + 2 * kKeys * D;                 // [2][kKeys][D]

  const int P = 1 << log_p;
  const int64_t h0 = static_cast<int64_t>(blockIdx.x) * HC;  // first query head of the CTA
  const int64_t kh = h0 / (H / KVH);
  const int64_t tile = gridDim.y - 1 - blockIdx.y;  // the tiles with most keys start first
  const int64_t r0 = tile * P;
  if (!flags[r0 / kRows]) return;
  const int n = static_cast<int>(min(static_cast<int64_t>(P), T - r0));
  // The last row's table holds every block the tile reads; the marking
  // kernel checked that the earlier rows' blocks are a prefix of it.
  const int32_t* __restrict__ trow = tables.blocks(r0 + n - 1);
  const int p0 = tables.position(r0 + n - 1) - (n - 1);
  const int n_keys = p0 + n;  // the last row sees keys 0..p0+n-1
  const int64_t row_elems = KVH * D;
  const bf16* kbase = kpool + kh * D;
  const bf16* vbase = vpool + kh * D;
  const int bs = static_cast<int>(BS);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  auto load_kv = [&](int kt, int buf) {
#pragma unroll
    for (int i = tid; i < kKeys * CH; i += kThreads) {
      const int key = i / CH, c = i % CH;
      const int j = kt * kKeys + key;
      const bool valid = j < n_keys;
      const int jj = valid ? j : 0;
      const int64_t at = (static_cast<int64_t>(trow[jj / bs]) * bs + jj % bs) * row_elems + c * 8;
      const int s = buf * kKeys * D + swz<D>(key, c);
      cp_async16(smem_addr(sK + s), kbase + at, valid);
      cp_async16(smem_addr(sV + s), vbase + at, valid);
    }
    cp_async_commit();
  };
  load_kv(0, 0);

  // Q rows (F32) -> scaled BF16 in shared memory; padding rows are zeros.
  for (int i = tid; i < R * CH; i += kThreads) {
    const int r = i / CH, c = i % CH, hg = r >> log_p, po = r & (P - 1);
    uint4 packed = make_uint4(0, 0, 0, 0);
    if (hg < HC && po < n) {
      const float4* src = reinterpret_cast<const float4*>(q + ((r0 + po) * H + h0 + hg) * D + c * 8);
      const float4 a = src[0], b = src[1];
      packed.x = pack_bf16(a.x * q_scale, a.y * q_scale);
      packed.y = pack_bf16(a.z * q_scale, a.w * q_scale);
      packed.z = pack_bf16(b.x * q_scale, b.y * q_scale);
      packed.w = pack_bf16(b.z * q_scale, b.w * q_scale);
    }
    *reinterpret_cast<uint4*>(sQ + swz<D>(r, c)) = packed;
  }

  const int g = lane >> 2, qd = lane & 3;
  float m[MT][2], l[MT][2];
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m[mt][0] = m[mt][1] = -1e30f;
    l[mt][0] = l[mt][1] = 0.f;
#pragma unroll
    for (int t = 0; t < D / 8; ++t) o[mt][t][0] = o[mt][t][1] = o[mt][t][2] = o[mt][t][3] = 0.f;
  }

  const int n_tiles = (n_keys + kKeys - 1) / kKeys;
  for (int kt = 0; kt < n_tiles; ++kt) {
    const int buf = static_cast<int>(kt & 1);
    if (kt + 1 < n_tiles) {
      load_kv(kt + 1, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // also publishes sQ on the first tile

    // S = Q K^T for this warp's 16 * MT rows and the tile's 64 keys; Q's
    // fragments are re-read from shared memory (registers hold O and S).
    float s[MT][kKeys / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int t = 0; t < kKeys / 8; ++t) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.f;
    const bf16* K = sK + buf * kKeys * D;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(qa[mt], smem_addr(sQ + swz<D>((warp * MT + mt) * 16 + (lane & 15), ks * 2 + (lane >> 4))));
#pragma unroll
      for (int nb = 0; nb < kKeys / 16; ++nb) {
        uint32_t b[4];
        ldmatrix_x4(b, smem_addr(K + swz<D>(nb * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1))));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(s[mt][2 * nb], qa[mt], b[0], b[1]);
          mma_bf16(s[mt][2 * nb + 1], qa[mt], b[2], b[3]);
        }
      }
    }
    // Causal mask: only the tiles reaching past the CTA's first position.
    // This thread's rows are (warp * MT + mt) * 16 + g (+ 8), at position
    // p0 + row % P.
    if ((kt + 1) * kKeys > p0 + 1) {
      const int k0 = kt * kKeys + 2 * qd - p0;  // key - p0 of the thread's first column
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int po = ((warp * MT + mt) * 16 + g + 8 * (e >> 1)) & (P - 1);
#pragma unroll
          for (int t = 0; t < kKeys / 8; ++t)
            if (k0 + t * 8 + (e & 1) > po) s[mt][t][e] = -INFINITY;
        }
    }
    // Online softmax per row: new maxima (over the 4 lanes of a row), rescale.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
      for (int t = 0; t < kKeys / 8; ++t) {
        mx[0] = fmaxf(mx[0], fmaxf(s[mt][t][0], s[mt][t][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[mt][t][2], s[mt][t][3]));
      }
      float corr[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        corr[r] = exp2f(m[mt][r] - mx[r]);
        m[mt][r] = mx[r];
      }
      float rs[2] = {0.f, 0.f};
#pragma unroll
      for (int t = 0; t < kKeys / 8; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = exp2f(s[mt][t][e] - m[mt][e >> 1]);
          s[mt][t][e] = p;
          rs[e >> 1] += p;
        }
      l[mt][0] = l[mt][0] * corr[0] + rs[0];
      l[mt][1] = l[mt][1] * corr[1] + rs[1];
#pragma unroll
      for (int t = 0; t < D / 8; ++t) {
        o[mt][t][0] *= corr[0], o[mt][t][1] *= corr[0];
        o[mt][t][2] *= corr[1], o[mt][t][3] *= corr[1];
      }
    }
    // O += P V: P's accumulator layout is the A fragment of the next mma.
    const bf16* V = sV + buf * kKeys * D;
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dc = 0; dc < D / 16; ++dc) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, smem_addr(V + swz<D>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), dc * 2 + (lane >> 4))));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(o[mt][2 * dc], a[mt], b[0], b[1]);
          mma_bf16(o[mt][2 * dc + 1], a[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // this buffer is refilled two tiles on
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int hi = 0; hi < 2; ++hi) {
      float sum = l[mt][hi];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int r = (warp * MT + mt) * 16 + g + 8 * hi, hg = r >> log_p, po = r & (P - 1);
      if (hg >= HC || po >= n) continue;
      const float inv = 1.f / sum;
      const int64_t at = ((r0 + po) * H + h0 + hg) * D + 2 * qd;
#pragma unroll
      for (int t = 0; t < D / 8; ++t)
        store_pair(out, ot, at + t * 8, o[mt][t][2 * hi] * inv, o[mt][t][2 * hi + 1] * inv);
    }
}

// The CTA shape for HC query heads per CTA: MT m16 tiles per warp and
// P = 2^log_p positions, the most that fit HC * P <= 64 * MT with P dividing
// the marking tiles of kRows rows. One head takes 64 rows, one m16 tile per
// warp (the kernel before head-group fusion); groups take 128 rows, two
// tiles per warp, which also halves the shared-memory reads per mma.
struct CtaShape {
  int hc, mt, log_p;
};
CtaShape cta_shape(const PagedAttentionArgs& a, PrefillCta cta) {
  const int hc = cta == PrefillCta::PerHead ? 1 : static_cast<int>(a.H / a.KVH);
  const int mt = hc == 1 ? 1 : 2;
  int log_p = 0;
  while ((2 << log_p) <= kRows && (2 << log_p) * hc <= 64 * mt) ++log_p;
  return {hc, mt, log_p};
}

template <int D, int MT>
cudaError_t launch_shape(const PagedAttentionArgs& a, int hc, int log_p, const int32_t* flags, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(64 * MT + 4 * kKeys) * D * sizeof(bf16);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_attention_kernel<D, MT>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  const int64_t P = int64_t{1} << log_p;
  const dim3 grid(static_cast<unsigned>(a.H / hc), static_cast<unsigned>((a.T + P - 1) / P));
  const float q_scale = a.scale * 1.4426950408889634f;  // log2(e): the softmax runs on exp2
  prefill_attention_kernel<D, MT><<<grid, kThreads, smem, stream>>>(
      a.q, static_cast<const bf16*>(a.kpool), static_cast<const bf16*>(a.vpool), RowTables{a.table, a.table_ld, a.T, a.n_seq}, a.T, a.H,
      a.KVH, a.BS, hc, log_p, q_scale, flags, a.out, a.out_type);
  return cudaGetLastError();
}

template <int D>
cudaError_t launch(const PagedAttentionArgs& a, PrefillCta cta, const int32_t* flags, cudaStream_t stream) {
  const CtaShape c = cta_shape(a, cta);
  return c.mt == 1 ? launch_shape<D, 1>(a, c.hc, c.log_p, flags, stream)
                   : launch_shape<D, 2>(a, c.hc, c.log_p, flags, stream);
}

PrefillCta env_cta() {
  static const PrefillCta c = [] {
    const char* v = std::getenv("XQUANT_PREFILL_GQA_FUSE");
    return v && v[0] == '0' ? PrefillCta::PerHead : PrefillCta::Group;
  }();
  return c;
}

bool switched_off() {
  static const bool off = [] {
    const char* v = std::getenv("XQUANT_PREFILL_ATTENTION");
    return v && v[0] == '0';
  }();
  return off;
}

}  // namespace

bool prefill_attention_applies(const PagedAttentionArgs& a, int64_t max_chunk_rows) {
  if (switched_off()) return false;
  if (a.pool_type != DType::BF16 || (a.D != 64 && a.D != 128)) return false;
  if (a.KVH <= 0 || a.H % a.KVH != 0 || a.H / a.KVH > 16) return false;
  if (a.T < kPrefillMinRows) return false;
  // Outputs are stored in aligned pairs; the grid's y extent holds the tiles.
  if (reinterpret_cast<uintptr_t>(a.out) % (a.out_type == DType::F32 ? 8 : 4) != 0) return false;
  for (const PrefillCta c : {PrefillCta::PerHead, PrefillCta::Group})
    if ((a.T >> cta_shape(a, c).log_p) >= 65535) return false;
  return max_chunk_rows == 0 || max_chunk_rows >= kPrefillMinRows;
}

size_t prefill_attention_workspace(int64_t T) {
  return static_cast<size_t>((T + kRows - 1) / kRows) * sizeof(int32_t);
}

cudaError_t prefill_attention(const PagedAttentionArgs& a, int32_t* tile_flags, cudaStream_t stream, PrefillCta cta) {
  if (cta == PrefillCta::Default) cta = env_cta();
  const int64_t tiles = (a.T + kRows - 1) / kRows;
  const RowTables tables{a.table, a.table_ld, a.T, a.n_seq};
  mark_prefill_tiles_kernel<<<static_cast<unsigned>(tiles), kRows, 0, stream>>>(tables, a.T, a.BS, tile_flags);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  return a.D == 64 ? launch<64>(a, cta, tile_flags, stream) : launch<128>(a, cta, tile_flags, stream);
}

}  // namespace xqcuda
