// flashinfer_decode.hpp: FlashInfer's decode attention (its CUDA-core
// split-KV kernel, include/flashinfer/attention/decode.cuh, FlashInfer 0.7.4)
// as the cuda provider's PAGED_ATTENTION for the decode steps the engine
// describes before running them (xq_kernel_vtable.plan_paged_step).
//
// Why: on the same BF16 pages this kernel of FlashInfer's takes 0.64-1.00x
// our split-K kernel's time on an H100 (bench/cuda/flashinfer_decode.cu,
// docs/cuda.md "FlashInfer's attention beside ours"), and in the engine's
// step 0.965-0.98x at 8 rows (the provider plans it from 8 rows: below, it
// measured slower there). Its kernel needs a plan
// made on the host from each row's length (scheduler.cuh DecodePlan: the
// KV chunk size and which (row, chunk) each block takes), which the op
// alone cannot give: the engine hands the lengths over once per step.
//
// How it reads our cache with no conversion: the pools are FlashInfer's NHD
// layout ([blocks, slots, kv heads, D]); its page list is our per-row table
// itself (indices = table + 1, row r's pages at indptr[r] = r * table_ld;
// indptr[rows] one short, so nothing past the table is read), and
// last_page_len[r] = len_r - (indptr[r+1] - indptr[r] - 1) * block_size
// makes its length formula, (indptr[r+1] - indptr[r] - 1) * page_size +
// last_page_len[r], give len_r (page.cuh paged_kv_t::get_length; the value
// is never used otherwise, and may be negative). The plan is made in FlashInfer's CUDA-graph mode
// (launch shape from rows and heads only; lengths reach the kernels through
// device arrays), so a recorded step replays with the next step's plan.
//
// Takes: head_dim 128, GQA groups 1, 2, 4 and 8, BF16 pools, F32 q (the
// kernel converts as it loads), F32 or BF16 output, compute capability 9.x
// (the kernels are built for sm_90a only). Everything else runs ours.
#pragma once

#include <xquant/xq_kernel.h>

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "paged_attention.hpp"

namespace xqcuda {

class FlashInferDecode {
 public:
  FlashInferDecode();
  ~FlashInferDecode();
  FlashInferDecode(const FlashInferDecode&) = delete;
  FlashInferDecode& operator=(const FlashInferDecode&) = delete;

  // Plans `p`'s rows and copies the plan to the device on `stream`; false,
  // with no plan kept, for rows = 0 or a shape its kernel does not take
  // (`why` says which). Split-KV partial outputs go in `workspace(ctx,
  // bytes)`, the provider's grow-only scratch (which keeps a buffer a
  // recorded graph still uses). Throws xquant::sdk::Error on a failed copy.
  bool plan(const xq_paged_plan& p, cudaStream_t stream, void* (*workspace)(void* ctx, size_t bytes), void* ctx,
            std::string* why);
  // Runs `a` on the current plan (with Programmatic Dependent Launch where
  // the provider's kernels use it, pdl.cuh); false (nothing launched) when
  // `a` is not the planned rows. Throws on a failed launch.
  bool run(const PagedAttentionArgs& a, cudaStream_t stream);
  // The current plan's shape (kv_lens null), or null when there is none;
  // and how many launches run() made, so the provider can tell which
  // recordings read the plan (graphs.cpp checks them at launch).
  const xq_paged_plan* current() const;
  uint64_t runs() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace xqcuda
