// decode_attention.hpp: ATTENTION over a contiguous KV cache split along the
// keys ("flash-decoding"), for the few query rows of a decode step.
//
// The one-block-per-(row, head) kernel of decoder_ops.cu gives a batch-1
// decode step only H blocks (32 on Llama-3.1-8B) that each walk every key
// serially; on an H200 that was ~40 µs per layer at ~384 keys. Here a CTA
// owns (row, kv head, key split) and its warps take tiles of 32 keys for
// every query head of the GQA group at once: the kernel of
// split_k_attention.cuh, which the paged cache's PAGED_ATTENTION shares;
// splits are sized so the launch covers the chip twice, down to one 32-key
// tile per split (split_k_plan.hpp), and a second kernel merges them.
#pragma once

#include <xquant/xq_kernel.h>

#include <cstddef>
#include <cstdint>

#include "kernels.hpp"

namespace xqcuda {

struct DecodeAttentionArgs {
  const void* q = nullptr;  // [T, H, D], dtype kv_type
  const void* k = nullptr;  // [S, KVH, D]
  const void* v = nullptr;  // [S, KVH, D]
  DType kv_type = DType::F32;  // F32 or BF16 (q, k and v alike)
  int64_t T = 0, H = 0, KVH = 0, D = 0;
  int64_t start = 0;  // row t sees keys 0 .. start + t
  float scale = 1.f;
  void* out = nullptr;  // [T, H, D]
  DType out_type = DType::F32;
};

// Whether the split kernel runs this shape: F32 or BF16 q/k/v, D a multiple
// of 8 up to 256, at most 16 query heads per kv head, and 16-byte aligned
// k and v (its K rows are read with 16-byte loads).
bool decode_attention_fits(const DecodeAttentionArgs& a);
// Key splits for `a` on a device of `sm_count` SMs, and the F32 workspace
// they need (0 for one split).
int decode_attention_splits(const DecodeAttentionArgs& a, int sm_count);
size_t decode_attention_workspace(const DecodeAttentionArgs& a, int splits);
// Enqueues the split kernel (and, for splits > 1, the merge) on `stream`.
cudaError_t decode_attention(const DecodeAttentionArgs& a, int splits, void* workspace, cudaStream_t stream);

}  // namespace xqcuda

namespace xqcuda {

// The xq_op front end (decode_attention_op.cpp): runs an ATTENTION op that
// check_decoder_op accepted through the split kernel when it fits
// (decode_attention_fits) and returns true; false leaves it to the
// one-block-per-head kernel. `workspace` grows the provider's scratch;
// throws xquant::sdk::Error on a launch failure.
bool run_decode_attention_op(const xq_op& op, int sm_count, void* (*workspace)(void* ctx, size_t bytes), void* ctx,
                             cudaStream_t stream);

}  // namespace xqcuda
