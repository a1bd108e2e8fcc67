// flashinfer_prefill.hpp: FlashInfer's FA2 paged prefill attention (its
// BatchPrefillWithPagedKVCache kernel, include/flashinfer/attention/
// prefill.cuh, FlashInfer 0.7.4) as the cuda provider's PAGED_ATTENTION for
// the prefill and mixed steps the engine describes before running them
// (xq_kernel_vtable.plan_paged_step with seqs > 0).
//
// Why: on one causal prompt over the same BF16 pages its kernel takes
// 0.82-0.85x the time of our tensor-core prefill path on an H100 (324
// against 264 TFLOP/s at 8192 tokens; bench/cuda/flashinfer_decode.cu
// --prefill, docs/cuda.md "FlashInfer's attention beside ours"), and
// attention is ~30% of an 8192-token prefill step (docs/results.md, session
// forty-four). Its kernel needs a plan made on the host from each request's
// query rows and key count (scheduler.cuh PrefillPlan: the query tile, the
// KV chunk size, which (request, query tile, chunk) each block takes), which
// the op alone cannot give.
//
// How it reads our cache with no conversion: the pools are FlashInfer's NHD
// layout; in the per-sequence form of src[3] (i[1] = n_seq) the n_seq block
// tables follow the rows' positions and sequence indices, so its page list
// is that array itself (indices = src[3] + 2T, sequence s's pages at
// indptr[s] = s * table_ld, indptr[n_seq] = n_seq * table_ld), with
// last_page_len[s] = len_s - (table_ld - 1) * block_size making its length
// formula give len_s, as in flashinfer_decode.hpp. Its causal mask puts a
// request's qo_len rows at the last qo_len of its kv_len positions: the
// engine's rows of a sequence are exactly that (xq_paged_plan.seq_rows).
// Its kernel takes BF16 queries: the op's F32 q rows are converted into the
// provider's workspace first (~1/30 of the kernel's time at 8192 rows).
//
// Takes: head_dim 128, any GQA group, BF16 pools, BF16 output, compute
// capability 9.x (built for sm_90a only), never while recording (prefill
// steps are not recorded). Everything else runs ours. XQUANT_FLASHINFER_
// PREFILL=0 turns it off.
#pragma once

#include <xquant/xq_kernel.h>

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "paged_attention.hpp"

namespace xqcuda {

class FlashInferPrefill {
 public:
  FlashInferPrefill();
  ~FlashInferPrefill();
  FlashInferPrefill(const FlashInferPrefill&) = delete;
  FlashInferPrefill& operator=(const FlashInferPrefill&) = delete;

  // Plans `p`'s sequences and copies the plan to the device on `stream`;
  // false, with no plan kept, for seqs = 0 or a shape it does not take
  // (`why` says which). The BF16 queries and split-KV partial outputs go in
  // `workspace(ctx, bytes)`, the provider's grow-only scratch. Throws
  // xquant::sdk::Error on a failed copy.
  bool plan(const xq_paged_plan& p, cudaStream_t stream, void* (*workspace)(void* ctx, size_t bytes), void* ctx,
            std::string* why);
  // Runs `a` on the current plan; false (nothing launched) when `a` is not
  // the planned step. Throws on a failed launch.
  bool run(const PagedAttentionArgs& a, cudaStream_t stream);

 private:
  // plan() after its checks: FlashInfer's plan and ours, into the buffers.
  bool plan_arrays(const xq_paged_plan& p, int64_t total_rows, cudaStream_t stream,
                   void* (*workspace)(void* ctx, size_t bytes), void* ctx, std::string* why);
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace xqcuda
