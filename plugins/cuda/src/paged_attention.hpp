// paged_attention.hpp: the paged KV cache on the `cuda` provider: launchers
// of KV_WRITE and PAGED_ATTENTION (paged_attention.cu) and their xq_op
// front end (paged_attention_check.cpp). Pools are [NB, BS, KVH, D] F32 or
// BF16; see abi/include/xquant/xq_kernel.h for the op contracts.
#pragma once

#include <xquant/xq_kernel.h>

#include <string>

#include "kernels.hpp"

namespace xqcuda {

// pool[slots[t]] = src row t (row_elems elements, rows `ld` apart) for t < T;
// negative slots are skipped.
cudaError_t kv_write(const void* src, DType st, int64_t ld, int64_t T, int64_t row_elems, const int32_t* slots,
                     void* pool, DType pt, cudaStream_t stream);

struct PagedAttentionArgs {
  const float* q = nullptr;  // [T, H, D]
  const void* kpool = nullptr;  // 16-byte aligned (K rows are read with 16-byte loads)
  const void* vpool = nullptr;
  DType pool_type = DType::F32;
  // src[3] (paged_table.cuh): n_seq = 0, per row [T, table_ld], each row's
  // position then block ids; n_seq > 0, [2T + n_seq * table_ld], the rows'
  // positions, their sequence indices, one table of table_ld blocks each.
  const int32_t* table = nullptr;
  int64_t table_ld = 0;
  int64_t n_seq = 0;
  int64_t T = 0, H = 0, KVH = 0, D = 0, BS = 0;
  int64_t max_keys = 0;  // MB * BS: the most keys any row sees
  float scale = 1.f;
  void* out = nullptr;  // [T, H, D]
  DType out_type = DType::F32;
  // Rows the prefill path (prefill_attention.hpp) answers: row t is skipped
  // when skip_tiles[t / skip_tile_rows] != 0. Null: every row is computed.
  const int32_t* skip_tiles = nullptr;
  int64_t skip_tile_rows = 1;
};

// How many key splits (flash-decoding) a launch uses, and the F32 workspace
// they need (0 for one split): the rule of split_k_plan.hpp, which the
// contiguous cache's ATTENTION uses too. max_keys: the most keys a row can
// see (the table width MB times BS).
int paged_attention_splits(int64_t T, int64_t KVH, int64_t max_keys, int sm_count);
size_t paged_attention_workspace(int64_t T, int64_t H, int64_t D, int splits);
cudaError_t paged_attention(const PagedAttentionArgs& a, int splits, void* workspace, cudaStream_t stream);

// The xq_op front end for KV_WRITE and PAGED_ATTENTION. run_paged_op throws
// xquant::sdk::Error; `workspace` grows the provider's scratch.
bool is_paged_op(xq_op_type t);
bool check_paged_op(const xq_op& op, std::string* why);
// `flashinfer` and `flashinfer_prefill` (may be null): FlashInfer's decode
// and prefill with the step's plan (flashinfer_decode.hpp,
// flashinfer_prefill.hpp), offered each PAGED_ATTENTION first.
class FlashInferDecode;
class FlashInferPrefill;
void run_paged_op(const xq_op& op, int sm_count, void* (*workspace)(void* ctx, size_t bytes), void* ctx,
                  cudaStream_t stream, FlashInferDecode* flashinfer = nullptr,
                  FlashInferPrefill* flashinfer_prefill = nullptr);

}  // namespace xqcuda
