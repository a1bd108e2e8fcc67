// moe_w4a16_rows.cu: the row gather in front of the grouped W4A16 MoE GEMM
// (moe_w4a16_grouped.hpp), and the choice of its token tile. The rest of the
// row work (sort, scatter, combine) is the W8A8 path's (moe_w8a8_rows.cu).
#include "moe_w4a16_grouped.hpp"

namespace xqcuda {
namespace {

constexpr int kGatherThreads = 128;

// One block per sorted row; 16-byte copies. Blocks past the routed rows
// (offsets[E], known only on the device) exit at once.
__global__ void __launch_bounds__(kGatherThreads)
    k_gather_rows(const uint4* __restrict__ x, int64_t row_vecs, int64_t x_div, const int32_t* __restrict__ row_slot,
                  const int32_t* __restrict__ offsets, int E, uint4* __restrict__ xs) {
  const int64_t r = blockIdx.x;
  if (r >= offsets[E]) return;
  const uint4* src = x + (row_slot[r] / x_div) * row_vecs;
  uint4* dst = xs + r * row_vecs;
  for (int64_t i = threadIdx.x; i < row_vecs; i += kGatherThreads) dst[i] = src[i];
}

}  // namespace

cudaError_t moe_w4a16_gather_rows(const void* x, int64_t K, int64_t x_div, const int32_t* row_slot,
                                  const int32_t* offsets, int E, int64_t n_slots, void* xs, cudaStream_t stream) {
  if (K % 8 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 || reinterpret_cast<uintptr_t>(xs) % 16 != 0)
    return cudaErrorInvalidValue;
  if (n_slots == 0) return cudaSuccess;
  k_gather_rows<<<static_cast<unsigned>(n_slots), kGatherThreads, 0, stream>>>(
      static_cast<const uint4*>(x), K / 8, x_div, row_slot, offsets, E, static_cast<uint4*>(xs));
  return cudaGetLastError();
}

const char* moe_w4a16_tile_name(MoeW4Tile t) {
  switch (t) {
    case MoeW4Tile::T32: return "128x32x128 ptr-array cooperative";
    case MoeW4Tile::T64: return "128x64x64 ptr-array cooperative";
    case MoeW4Tile::T128: return "128x128x64 ptr-array cooperative";
  }
  return "?";
}

// shapes, x/y pointers, x/y/scale strides, weight layouts: 7 arrays, each
// padded to 256 bytes (moe_w4a16_sm90.cuh, Tables).
size_t moe_w4a16_table_bytes(int E) { return 7 * 256 + static_cast<size_t>(E) * (12 + 16 + 48 + 256) + 256; }

cudaError_t moe_w4a16_grouped_gemm(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                   void* workspace_ctx, int sm_count, cudaStream_t stream) {
  if (p.E < 1 || p.N <= 0 || p.K <= 0 || p.N % 16 != 0 || p.K % 64 != 0 || p.group_size <= 0 ||
      (p.group_size != p.K && p.group_size % 64 != 0) || p.N * p.K >= (int64_t{1} << 31))
    return cudaErrorNotSupported;
  if (reinterpret_cast<uintptr_t>(p.xs) % 16 != 0 || reinterpret_cast<uintptr_t>(p.y) % 16 != 0)
    return cudaErrorNotSupported;
  const bool k128_fits = p.group_size % 128 == 0 || p.group_size == p.K;
  switch (p.tile) {
    case MoeW4Tile::T32:
      if (k128_fits) return moe_w4a16_grouped_gemm_t32(p, tables, workspace, workspace_ctx, sm_count, stream);
      [[fallthrough]];
    case MoeW4Tile::T64: return moe_w4a16_grouped_gemm_t64(p, tables, workspace, workspace_ctx, sm_count, stream);
    case MoeW4Tile::T128: break;
  }
  return moe_w4a16_grouped_gemm_t128(p, tables, workspace, workspace_ctx, sm_count, stream);
}

}  // namespace xqcuda
