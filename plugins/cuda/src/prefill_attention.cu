// prefill_attention.cu: causal attention of prefill chunks over the paged
// BF16 KV cache on the tensor cores (prefill_attention.hpp).
//
// The kernel follows FlashAttention-2 (Dao 2023, arXiv:2307.08691, Alg. 1;
// the reference implementation is csrc/flash_attn/src/flash_fwd_kernel.h in
// github.com/Dao-AILab/flash-attention): a CTA owns 64 query rows of one
// sequence and one query head; each of its 4 warps keeps 16 rows' Q
// fragments, running max m, sum l and output accumulator in registers, and
// walks the sequence's keys in tiles of 64: S = Q K^T and O += P V with
// mma.sync m16n8k16 (BF16 in, F32 accumulate), online softmax in between.
// K/V tiles come from the block table through cp.async into two shared
// buffers (the next tile loads while this one is used). Shared rows are
// 16-byte chunks XOR-swizzled by row so that ldmatrix reads hit 8 distinct
// bank groups. Q is scaled by scale * log2(e) on its way to BF16, so the
// softmax uses exp2.
#include <cfloat>
#include <cstdlib>

#include "common.cuh"
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

// Element offset of 16-byte chunk `c` of shared row `r` (rows of D elements).
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
  return r * D + ((c ^ (r & 7)) << 3);
}

// A tile is a prefill tile when each of its rows continues the one before:
// the next position of the same sequence, i.e. the same blocks for every key
// the earlier row sees (comparing the whole used table, not just its first
// block, keeps shared prefixes of different sequences apart).
__global__ void mark_prefill_tiles_kernel(const int32_t* __restrict__ table, int64_t ld, int64_t T, int64_t BS,
                                          int32_t* __restrict__ flags) {
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t n = min(static_cast<int64_t>(kRows), T - r0);
  const int i = threadIdx.x;
  int ok = 1;
  if (i > 0 && i < n) {
    const int32_t* cur = table + (r0 + i) * ld;
    const int32_t* prev = cur - ld;
    ok = prev[0] >= 0 && cur[0] == prev[0] + 1 && cur[0] / BS + 1 <= ld - 1;
    const int64_t used = prev[0] / BS + 1;  // blocks the earlier row reads
    for (int64_t b = 1; ok && b <= used; ++b) ok = cur[b] == prev[b];
  }
  ok = __syncthreads_and(ok);
  if (i == 0) flags[blockIdx.x] = ok && n >= kPrefillMinRows && table[r0 * ld] >= 0 ? 1 : 0;
}

template <int D>
__global__ void __launch_bounds__(kThreads) prefill_attention_kernel(
    const float* __restrict__ q, const bf16* __restrict__ kpool, const bf16* __restrict__ vpool,
    const int32_t* __restrict__ table, int64_t ld, int64_t T, int64_t H, int64_t KVH, int64_t BS, float q_scale,
    const int32_t* __restrict__ flags, void* __restrict__ out, DType ot) {
  constexpr int CH = D / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [kRows][D]
  bf16* sK = sQ + kRows * D;                     // [2][kKeys][D]
  bf16* sV = sK + 2 * kKeys * D;                 // [2][kKeys][D]

  const int64_t h = blockIdx.x;
  const int64_t tile = gridDim.y - 1 - blockIdx.y;  // the tiles with most keys start first
  if (!flags[tile]) return;
  const int64_t r0 = tile * kRows;
  const int n = static_cast<int>(min(static_cast<int64_t>(kRows), T - r0));
  const int32_t* trow = table + r0 * ld;  // every row of the tile shares these blocks
  const int64_t p0 = trow[0];
  const int64_t n_keys = p0 + n;  // the last row sees keys 0..p0+n-1
  const int64_t kh = h / (H / KVH);
  const int64_t row_elems = KVH * D;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  auto load_kv = [&](int64_t kt, int buf) {
    for (int i = tid; i < kKeys * CH; i += kThreads) {
      const int key = i / CH, c = i % CH;
      const int64_t j = kt * kKeys + key;
      const bool valid = j < n_keys;
      const int64_t jj = valid ? j : 0;
      const int64_t at = (static_cast<int64_t>(trow[1 + jj / BS]) * BS + jj % BS) * row_elems + kh * D + c * 8;
      const int s = buf * kKeys * D + swz<D>(key, c);
      cp_async16(smem_addr(sK + s), kpool + at, valid);
      cp_async16(smem_addr(sV + s), vpool + at, valid);
    }
    cp_async_commit();
  };
  load_kv(0, 0);

  // Q rows (F32) -> scaled BF16 in shared memory; rows past n are zeros.
  for (int i = tid; i < kRows * CH; i += kThreads) {
    const int r = i / CH, c = i % CH;
    uint4 packed = make_uint4(0, 0, 0, 0);
    if (r < n) {
      const float4* src = reinterpret_cast<const float4*>(q + ((r0 + r) * H + h) * D + c * 8);
      const float4 a = src[0], b = src[1];
      packed.x = pack_bf16(a.x * q_scale, a.y * q_scale);
      packed.y = pack_bf16(a.z * q_scale, a.w * q_scale);
      packed.z = pack_bf16(b.x * q_scale, b.y * q_scale);
      packed.w = pack_bf16(b.z * q_scale, b.w * q_scale);
    }
    *reinterpret_cast<uint4*>(sQ + swz<D>(r, c)) = packed;
  }
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) ldmatrix_x4(qf[ks], smem_addr(sQ + swz<D>(warp * 16 + (lane & 15), ks * 2 + (lane >> 4))));

  const int g = lane >> 2, qd = lane & 3;
  const int64_t pos_lo = p0 + warp * 16 + g;  // positions of this thread's two rows
  const int64_t pos_hi = pos_lo + 8;
  float m[2] = {-1e30f, -1e30f}, l[2] = {0.f, 0.f};
  float o[D / 8][4];
#pragma unroll
  for (int t = 0; t < D / 8; ++t) o[t][0] = o[t][1] = o[t][2] = o[t][3] = 0.f;

  const int64_t n_tiles = (n_keys + kKeys - 1) / kKeys;
  for (int64_t kt = 0; kt < n_tiles; ++kt) {
    const int buf = static_cast<int>(kt & 1);
    if (kt + 1 < n_tiles) {
      load_kv(kt + 1, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float s[kKeys / 8][4];
#pragma unroll
    for (int t = 0; t < kKeys / 8; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.f;
    const bf16* K = sK + buf * kKeys * D;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
      for (int nb = 0; nb < kKeys / 16; ++nb) {
        uint32_t b[4];
        ldmatrix_x4(b, smem_addr(K + swz<D>(nb * 16 + (lane & 7) + ((lane >> 4) << 3), ks * 2 + ((lane >> 3) & 1))));
        mma_bf16(s[2 * nb], qf[ks], b[0], b[1]);
        mma_bf16(s[2 * nb + 1], qf[ks], b[2], b[3]);
      }
    }
    // Causal mask: only tiles reaching past this warp's first position.
    if ((kt + 1) * kKeys > p0 + warp * 16) {
#pragma unroll
      for (int t = 0; t < kKeys / 8; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t key = kt * kKeys + t * 8 + 2 * qd + (e & 1);
          if (key > (e < 2 ? pos_lo : pos_hi)) s[t][e] = -INFINITY;
        }
    }
    // Online softmax: new row maxima (over the 4 lanes of a row), rescale.
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int t = 0; t < kKeys / 8; ++t) {
      mx[0] = fmaxf(mx[0], fmaxf(s[t][0], s[t][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[t][2], s[t][3]));
    }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = exp2f(m[r] - mx[r]);
      m[r] = mx[r];
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int t = 0; t < kKeys / 8; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[t][e] - m[e >> 1]);
        s[t][e] = p;
        rs[e >> 1] += p;
      }
    l[0] = l[0] * corr[0] + rs[0];
    l[1] = l[1] * corr[1] + rs[1];
#pragma unroll
    for (int t = 0; t < D / 8; ++t) {
      o[t][0] *= corr[0], o[t][1] *= corr[0];
      o[t][2] *= corr[1], o[t][3] *= corr[1];
    }
    // O += P V: P's accumulator layout is the A fragment of the next mma.
    const bf16* V = sV + buf * kKeys * D;
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dc = 0; dc < D / 16; ++dc) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, smem_addr(V + swz<D>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3), dc * 2 + (lane >> 4))));
        mma_bf16(o[2 * dc], a, b[0], b[1]);
        mma_bf16(o[2 * dc + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // this buffer is refilled two tiles on
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const int row_lo = warp * 16 + g, row_hi = row_lo + 8;
  const float inv_lo = 1.f / l[0], inv_hi = 1.f / l[1];
#pragma unroll
  for (int t = 0; t < D / 8; ++t) {
    const int d = t * 8 + 2 * qd;
    if (row_lo < n) {
      const int64_t at = ((r0 + row_lo) * H + h) * D + d;
      store_from_float(out, ot, at, o[t][0] * inv_lo);
      store_from_float(out, ot, at + 1, o[t][1] * inv_lo);
    }
    if (row_hi < n) {
      const int64_t at = ((r0 + row_hi) * H + h) * D + d;
      store_from_float(out, ot, at, o[t][2] * inv_hi);
      store_from_float(out, ot, at + 1, o[t][3] * inv_hi);
    }
  }
}

template <int D>
cudaError_t launch(const PagedAttentionArgs& a, const int32_t* flags, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(kRows + 4 * kKeys) * D * sizeof(bf16);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(prefill_attention_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  const int64_t tiles = (a.T + kRows - 1) / kRows;
  const dim3 grid(static_cast<unsigned>(a.H), static_cast<unsigned>(tiles));
  const float q_scale = a.scale * 1.4426950408889634f;  // log2(e): the softmax runs on exp2
  prefill_attention_kernel<D><<<grid, kThreads, smem, stream>>>(
      a.q, static_cast<const bf16*>(a.kpool), static_cast<const bf16*>(a.vpool), a.table, a.table_ld, a.T, a.H,
      a.KVH, a.BS, q_scale, flags, a.out, a.out_type);
  return cudaGetLastError();
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
  return max_chunk_rows == 0 || max_chunk_rows >= kPrefillMinRows;
}

size_t prefill_attention_workspace(int64_t T) {
  return static_cast<size_t>((T + kRows - 1) / kRows) * sizeof(int32_t);
}

cudaError_t prefill_attention(const PagedAttentionArgs& a, int32_t* tile_flags, cudaStream_t stream) {
  const int64_t tiles = (a.T + kRows - 1) / kRows;
  mark_prefill_tiles_kernel<<<static_cast<unsigned>(tiles), kRows, 0, stream>>>(a.table, a.table_ld, a.T, a.BS,
                                                                               tile_flags);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  return a.D == 64 ? launch<64>(a, tile_flags, stream) : launch<128>(a, tile_flags, stream);
}

}  // namespace xqcuda
