// paged_attention.cu: the paged KV cache's two kernels (paged_attention.hpp):
// writing new K/V rows into their block slots, and attention of one query
// row per (sequence, position) over that sequence's blocks: the shared
// split-K kernel (split_k_attention.cuh) with keys found through the block
// tables (paged_table.cuh).
#include "common.cuh"
#include "paged_attention.hpp"
#include "split_k_launch.cuh"

namespace xqcuda {

namespace {

__global__ void kv_write_kernel(const void* src, DType st, int64_t ld, int64_t T, int64_t row_elems,
                                const int32_t* slots, void* pool, DType pt) {
  const int64_t t = blockIdx.x;
  if (t >= T) return;
  const int32_t slot = slots[t];
  if (slot < 0) return;
  for (int64_t i = threadIdx.x; i < row_elems; i += blockDim.x)
    store_from_float(pool, pt, static_cast<int64_t>(slot) * row_elems + i, load_as_float(src, st, t * ld + i));
}

}  // namespace

cudaError_t kv_write(const void* src, DType st, int64_t ld, int64_t T, int64_t row_elems, const int32_t* slots,
                     void* pool, DType pt, cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  kv_write_kernel<<<static_cast<unsigned>(T), 256, 0, stream>>>(src, st, ld, T, row_elems, slots, pool, pt);
  return cudaGetLastError();
}

int paged_attention_splits(int64_t T, int64_t KVH, int64_t max_keys, int sm_count) {
  return split_k_splits(T * KVH, max_keys, sm_count);
}

size_t paged_attention_workspace(int64_t T, int64_t H, int64_t D, int splits) {
  return split_k_workspace(T, H, D, splits);
}

cudaError_t paged_attention(const PagedAttentionArgs& a, int splits, void* workspace, cudaStream_t stream) {
  // q is F32 whatever the pools hold.
  const split_k::Launch l{a.q, a.kpool, a.vpool, a.pool_type == DType::BF16, a.T, a.H, a.KVH, a.D, a.max_keys,
                          a.scale, a.out, a.out_type};
  const split_k::BlockTableKeys keys{RowTables{a.table, a.table_ld, a.T, a.n_seq}, a.BS, a.skip_tiles,
                                     a.skip_tile_rows};
  return split_k::attention</*Q_LIKE_KV=*/false>(l, keys, splits, workspace, stream);
}

}  // namespace xqcuda
