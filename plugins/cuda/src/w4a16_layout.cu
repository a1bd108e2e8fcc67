// w4a16_layout.cu: the native W4A16 layout ("cuda-w4a16-mma") and its
// conversions: canonical -> native repack (weights and scale/zero words),
// native -> dense dequantize (for DEQUANTIZE and the dequant+GEMM path), and
// the activation column gather used for act-order and K padding.
// kernels.hpp documents the layout; this file is its single definition.
#include "common.cuh"

#include <type_traits>

namespace xqcuda {
namespace {

__global__ void k_w4_pack(W4Layout L, const int8_t* __restrict__ codes, const int32_t* __restrict__ perm,
                          uint4* __restrict__ qw) {
  const int64_t total = L.n_blocks * 8 * L.chunks * 32;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int lane = static_cast<int>(idx & 31);
    const int64_t t8 = (idx >> 5) & 7;
    const int64_t rest = idx >> 8;
    const int64_t chunk = rest % L.chunks;
    const int64_t nt = (rest / L.chunks) * 8 + t8;
    const int gid = lane >> 2, tig = lane & 3;
    uint32_t words[4];
#pragma unroll
    for (int kt = 0; kt < 4; ++kt) {
      uint32_t w = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int rsel = j & 1, csel = j >> 1;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t row = nt * 16 + gid + 8 * rsel;
          const int64_t col = chunk * 64 + kt * 16 + 2 * tig + 8 * csel + e;
          int code = 0;
          if (row < L.N && col < L.K) code = codes[row * L.K + (perm ? perm[col] : col)];
          const uint32_t u = static_cast<uint32_t>(code + 8) & 0xFu;
          w |= u << (4 * j + 16 * e);
        }
      }
      words[kt] = w;
    }
    qw[idx] = make_uint4(words[0], words[1], words[2], words[3]);
  }
}

__global__ void k_w4_pack_scales(W4Layout L, const float* __restrict__ scales, const int8_t* __restrict__ zp,
                                 uint2* __restrict__ sz_bf16, uint2* __restrict__ sz_f16) {
  const int64_t total = L.n_blocks * L.n_groups * 64;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int gid = static_cast<int>(idx & 7);
    const int64_t t8 = (idx >> 3) & 7;
    const int64_t rest = idx >> 6;
    const int64_t g = rest % L.n_groups;
    const int64_t nt = (rest / L.n_groups) * 8 + t8;
    float s[2];
    int z[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = nt * 16 + gid + 8 * h;
      s[h] = row < L.N ? scales[row * L.n_groups + g] : 0.f;
      z[h] = (row < L.N && zp) ? zp[row * L.n_groups + g] : 0;
    }
    auto b16 = [](__nv_bfloat16 v) { return static_cast<uint32_t>(__bfloat16_as_ushort(v)); };
    auto h16 = [](__half v) { return static_cast<uint32_t>(__half_as_ushort(v)); };
    uint2 wb, wh;
    wb.x = b16(__float2bfloat16_rn(s[0])) | (b16(__float2bfloat16_rn(s[1])) << 16);
    wb.y = b16(__float2bfloat16_rn(136.f + z[0])) | (b16(__float2bfloat16_rn(136.f + z[1])) << 16);
    wh.x = h16(__float2half_rn(s[0])) | (h16(__float2half_rn(s[1])) << 16);
    wh.y = h16(__float2half_rn(1032.f + z[0])) | (h16(__float2half_rn(1032.f + z[1])) << 16);
    sz_bf16[idx] = wb;
    sz_f16[idx] = wh;
  }
}

__device__ __forceinline__ float half_bits_to_float(uint32_t bits, bool is_f16) {
  const uint16_t b = static_cast<uint16_t>(bits & 0xFFFFu);
  return is_f16 ? __half2float(__ushort_as_half(b)) : __bfloat162float(__ushort_as_bfloat16(b));
}

__global__ void k_w4_dequant(W4Layout L, const uint4* __restrict__ qw, const uint2* __restrict__ sz, bool is_f16,
                             const int32_t* __restrict__ perm, void* __restrict__ out, DType out_type, int64_t ld) {
  const int64_t total = L.n_blocks * 8 * L.chunks * 32;
  const float magic = is_f16 ? 1024.f : 128.f;
  const bool pair_store = !perm && out_type != DType::F32 && (ld % 2 == 0) && (L.K % 2 == 0);
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int lane = static_cast<int>(idx & 31);
    const int64_t t8 = (idx >> 5) & 7;
    const int64_t rest = idx >> 8;
    const int64_t chunk = rest % L.chunks;
    const int64_t nt = (rest / L.chunks) * 8 + t8;
    if (nt >= L.n_tiles) continue;
    const int gid = lane >> 2, tig = lane & 3;
    const uint4 q4 = qw[idx];
    const uint32_t words[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
    for (int kt = 0; kt < 4; ++kt) {
      const int64_t kbase = chunk * 64 + kt * 16;
      if (kbase >= L.K) break;
      const int64_t g = kbase >> L.gs_shift;
      const uint2 w = sz[(((nt >> 3) * L.n_groups + g) * 8 + (nt & 7)) * 8 + gid];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int rsel = j & 1, csel = j >> 1;
        const int64_t row = nt * 16 + gid + 8 * rsel;
        if (row >= L.N) continue;
        const float s = half_bits_to_float(rsel ? (w.x >> 16) : w.x, is_f16);
        const float zb = half_bits_to_float(rsel ? (w.y >> 16) : w.y, is_f16);
        const int64_t col0 = kbase + 2 * tig + 8 * csel;
        float v[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const uint32_t u = (words[kt] >> (4 * j + 16 * e)) & 0xFu;
          v[e] = ((static_cast<float>(u) + magic) - zb) * s;
        }
        if (pair_store && col0 + 1 < L.K) {
          uint32_t packed;
          if (out_type == DType::BF16) {
            packed = static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v[0]))) |
                     (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v[1]))) << 16);
          } else {
            packed = static_cast<uint32_t>(__half_as_ushort(__float2half_rn(v[0]))) |
                     (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(v[1]))) << 16);
          }
          *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(out) + row * ld + col0) = packed;
        } else {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int64_t col = col0 + e;
            if (col < L.K) store_from_float(out, out_type, row * ld + (perm ? perm[col] : col), v[e]);
          }
        }
      }
    }
  }
}


// Fast path for the dequant+GEMM route: 16-bit output in native column
// order, one warp per (n-tile, chunk): the lane dequantizes its fragment
// exactly as the GEMM kernel does (same rounding), stages the 16x64 tile in
// shared memory and the warp writes it back as 16-byte row pieces.
template <typename T>
__global__ void __launch_bounds__(256) k_w4_dequant16(W4Layout L, const uint4* __restrict__ qw,
                                                      const uint2* __restrict__ sz, T* __restrict__ out, int64_t ld) {
  __shared__ __align__(16) uint32_t tile[8][16][36];  // 8 warps x 16 rows x (32 + 4 pad) pairs
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int gid = lane >> 2, tig = lane & 3;
  const uint32_t magic = sizeof(T) == 2 && std::is_same<T, __half>::value ? 0x64006400u : 0x43004300u;
  const int64_t total = L.n_blocks * 8 * L.chunks;
  for (int64_t w = blockIdx.x * 8LL + warp; w < total; w += gridDim.x * 8LL) {
    const int64_t t8 = w & 7, chunk = (w >> 3) % L.chunks, nt = ((w >> 3) / L.chunks) * 8 + t8;
    const uint4 q4 = qw[w * 32 + lane];
    const uint32_t words[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
    for (int kt = 0; kt < 4; ++kt) {
      const int64_t g = (chunk * 64 + kt * 16) >> L.gs_shift;
      const uint2 sw = sz[(((nt >> 3) * L.n_groups + g) * 8 + t8) * 8 + gid];
      const uint32_t sA = __byte_perm(sw.x, 0, 0x1010), sB = __byte_perm(sw.x, 0, 0x3232);
      const uint32_t zA = __byte_perm(sw.y, 0, 0x1010), zB = __byte_perm(sw.y, 0, 0x3232);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t v = ((words[kt] >> (4 * j)) & 0x000F000Fu) | magic;
        const uint32_t zb = (j & 1) ? zB : zA, s = (j & 1) ? sB : sA;
        uint32_t r;
        if constexpr (std::is_same<T, __half>::value) {
          __half2 h = __hmul2(__hsub2(*reinterpret_cast<const __half2*>(&v), *reinterpret_cast<const __half2*>(&zb)),
                              *reinterpret_cast<const __half2*>(&s));
          r = *reinterpret_cast<uint32_t*>(&h);
        } else {
          __nv_bfloat162 h = __hmul2(__hsub2(*reinterpret_cast<const __nv_bfloat162*>(&v),
                                             *reinterpret_cast<const __nv_bfloat162*>(&zb)),
                                     *reinterpret_cast<const __nv_bfloat162*>(&s));
          r = *reinterpret_cast<uint32_t*>(&h);
        }
        // pair (row gid + 8*(j&1), cols kt*16 + 2*tig + 8*(j>>1) .. +1)
        tile[warp][gid + 8 * (j & 1)][(kt * 16 + 2 * tig + 8 * (j >> 1)) >> 1] = r;
      }
    }
    __syncwarp();
    // 16 rows x 128 bytes = 128 pieces of 16 bytes; 4 per lane.
#pragma unroll
    for (int it = 0; it < 4; ++it) {
      const int piece = it * 32 + lane;
      const int r = piece >> 3, c8 = piece & 7;  // 8 halfs per piece
      const int64_t row = nt * 16 + r, col = chunk * 64 + c8 * 8;
      if (row < L.N && col < L.K) {
        const uint4 v = *reinterpret_cast<const uint4*>(&tile[warp][r][c8 * 4]);
        T* dst = out + row * ld + col;
        if (col + 8 <= L.K && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
          *reinterpret_cast<uint4*>(dst) = v;
        } else {
          const T* vs = reinterpret_cast<const T*>(&v);
          for (int e = 0; e < 8 && col + e < L.K; ++e) dst[e] = vs[e];
        }
      }
    }
    __syncwarp();
  }
}

__global__ void k_gather(const void* __restrict__ x, DType t, int64_t M, int64_t K, int64_t ldx,
                         const int32_t* __restrict__ perm, void* __restrict__ xs, int64_t ld) {
  const int64_t total = M * ld;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = idx / ld, c = idx % ld;
    float v = 0.f;
    if (c < K) v = load_as_float(x, t, m * ldx + (perm ? perm[c] : c));
    store_from_float(xs, t, idx, v);
  }
}

// The same for 2-byte activations (BF16, F16) into rows whose length `ld` is
// a multiple of 8 and 16-byte aligned, for batches of few rows: one thread
// writes 8 output columns with one 16-byte store, the row's blocks on
// blockIdx.x, rows on blockIdx.y. The per-element kernel above spends a
// 64-bit division and a dtype switch on every element.
__global__ void k_gather16(const uint16_t* __restrict__ x, int64_t M, int64_t K, int64_t ldx,
                           const int32_t* __restrict__ perm, uint16_t* __restrict__ xs, int64_t ld) {
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
  if (c0 >= ld) return;
  for (int64_t m = blockIdx.y; m < M; m += gridDim.y) {
    const uint16_t* row = x + m * ldx;
    alignas(16) uint16_t v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t c = c0 + j;
      v[j] = c < K ? row[perm ? perm[c] : c] : uint16_t{0};
    }
    *reinterpret_cast<uint4*>(xs + m * ld + c0) = *reinterpret_cast<const uint4*>(v);
  }
}

// The same gather for batches of rows (kGatherRowsMinM and more): one block
// per row at a time copies the row into shared memory with coalesced loads
// (16 bytes a thread where the row allows), then gathers from there, so a
// row's bytes are read once; in k_gather16 each of a row's ld / 2048 blocks
// reads scattered elements from all of it. On the H100 (bench_cuda.py's
// act-order column against the symmetric one, 2026-12-05) the per-element
// kernel cost 93-386 us more than the symmetric weight's call at M = 4096,
// k_gather16 83-316 us.
__global__ void k_gather16_rows(const uint16_t* __restrict__ x, int64_t M, int64_t K, int64_t ldx,
                                const int32_t* __restrict__ perm, uint16_t* __restrict__ xs, int64_t ld, bool vec) {
  extern __shared__ uint4 row_words[];
  uint16_t* row_s = reinterpret_cast<uint16_t*>(row_words);
  for (int64_t m = blockIdx.x; m < M; m += gridDim.x) {
    const uint16_t* row = x + m * ldx;
    if (vec) {
      for (int64_t w = threadIdx.x; w < K / 8; w += blockDim.x) row_words[w] = reinterpret_cast<const uint4*>(row)[w];
    } else {
      for (int64_t c = threadIdx.x; c < K; c += blockDim.x) row_s[c] = row[c];
    }
    __syncthreads();
    for (int64_t c0 = threadIdx.x * 8; c0 < ld; c0 += blockDim.x * 8) {
      alignas(16) uint16_t v[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t c = c0 + j;
        v[j] = c < K ? row_s[perm ? perm[c] : c] : uint16_t{0};
      }
      *reinterpret_cast<uint4*>(xs + m * ld + c0) = *reinterpret_cast<const uint4*>(v);
    }
    __syncthreads();  // the next row overwrites row_s
  }
}

// Batches from this many rows take k_gather16_rows (one block a row); fewer
// rows take k_gather16, whose blocks split a row's columns.
constexpr int64_t kGatherRowsMinM = 32;
// The most shared memory a row may take there (K up to 49,152): raised once
// from the 48 KB default.
constexpr int64_t kGatherRowsMaxBytes = 96 << 10;

}  // namespace

cudaError_t w4_pack(const W4Layout& L, const int8_t* codes, const int32_t* perm, uint4* qw, cudaStream_t stream) {
  const int64_t total = L.n_blocks * 8 * L.chunks * 32;
  k_w4_pack<<<blocks_for(total, 256), 256, 0, stream>>>(L, codes, perm, qw);
  return cudaGetLastError();
}

cudaError_t w4_pack_scales(const W4Layout& L, const float* scales, const int8_t* zp, uint2* sz_bf16, uint2* sz_f16,
                           cudaStream_t stream) {
  const int64_t total = L.n_blocks * L.n_groups * 64;
  k_w4_pack_scales<<<blocks_for(total, 256), 256, 0, stream>>>(L, scales, zp, sz_bf16, sz_f16);
  return cudaGetLastError();
}

cudaError_t w4_dequant(const W4Layout& L, const uint4* qw, const uint2* sz, bool sz_is_f16, const int32_t* perm,
                       void* out, DType out_type, int64_t ld, cudaStream_t stream) {
  const bool f16_out = out_type == DType::F16, bf16_out = out_type == DType::BF16;
  if (!perm && ((f16_out && sz_is_f16) || (bf16_out && !sz_is_f16))) {
    const unsigned blocks = blocks_for(L.n_blocks * 8 * L.chunks, 8, 132 * 16);
    if (f16_out) k_w4_dequant16<__half><<<blocks, 256, 0, stream>>>(L, qw, sz, static_cast<__half*>(out), ld);
    else k_w4_dequant16<__nv_bfloat16><<<blocks, 256, 0, stream>>>(L, qw, sz, static_cast<__nv_bfloat16*>(out), ld);
    return cudaGetLastError();
  }
  const int64_t total = L.n_blocks * 8 * L.chunks * 32;
  k_w4_dequant<<<blocks_for(total, 256), 256, 0, stream>>>(L, qw, sz, sz_is_f16, perm, out, out_type, ld);
  return cudaGetLastError();
}

cudaError_t gather_columns(const void* x, DType t, int64_t M, int64_t K, int64_t ldx, const int32_t* perm, void* xs,
                           int64_t ld, cudaStream_t stream) {
  const bool two_bytes = t == DType::BF16 || t == DType::F16;
  if (two_bytes && ld % 8 == 0 && (reinterpret_cast<uintptr_t>(xs) & 15) == 0 && M >= kGatherRowsMinM &&
      K * 2 <= kGatherRowsMaxBytes) {
    static const cudaError_t raised = cudaFuncSetAttribute(k_gather16_rows, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                           static_cast<int>(kGatherRowsMaxBytes));
    if (raised != cudaSuccess) return raised;
    const bool vec = K % 8 == 0 && ldx % 8 == 0 && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
    const size_t smem = static_cast<size_t>((K + 7) / 8) * 16;
    k_gather16_rows<<<static_cast<unsigned>(M < 65535 ? M : 65535), 256, smem, stream>>>(
        static_cast<const uint16_t*>(x), M, K, ldx, perm, static_cast<uint16_t*>(xs), ld, vec);
    return cudaGetLastError();
  }
  if (two_bytes && ld % 8 == 0 && (reinterpret_cast<uintptr_t>(xs) & 15) == 0 && M > 0) {
    const dim3 grid(static_cast<unsigned>((ld / 8 + 255) / 256), static_cast<unsigned>(M < 65535 ? M : 65535));
    k_gather16<<<grid, 256, 0, stream>>>(static_cast<const uint16_t*>(x), M, K, ldx, perm, static_cast<uint16_t*>(xs),
                                         ld);
    return cudaGetLastError();
  }
  k_gather<<<blocks_for(M * ld, 256), 256, 0, stream>>>(x, t, M, K, ldx, perm, xs, ld);
  return cudaGetLastError();
}

}  // namespace xqcuda
