// flashinfer_prefill.cu: FlashInferPrefill (flashinfer_prefill.hpp): the
// plan, made as FlashInfer's PrefillPlan makes it outside CUDA-graph mode,
// and the causal launch with BF16 queries and output.
#include "flashinfer_prefill.hpp"

#include <xquant/sdk/error.hpp>

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/prefill.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>
#include <flashinfer/exception.h>

#include "flashinfer_plan_buffers.hpp"
#include "pdl.cuh"

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

using KV = __nv_bfloat16;
using Params = flashinfer::BatchPrefillPagedParams<KV, KV, KV, int32_t>;
using Variant = flashinfer::DefaultAttention</*custom_mask=*/false, /*sliding_window=*/false,
                                             /*logits_soft_cap=*/false, /*alibi=*/false>;
constexpr uint32_t kHeadDim = 128;

// FlashInfer's plan arrays (request, query-tile and KV-tile indices per
// block, merge and output offsets: a few ints per query tile) get the
// region its Python wrapper gives them (8 MiB); our per-sequence arrays
// (qo_indptr, indptr, last_page_len) follow it.
constexpr size_t kPlanBytes = size_t{8} << 20;
constexpr int64_t kMaxSeqs = 16384;
constexpr size_t kIntBytes = kPlanBytes + (3 * kMaxSeqs + 2) * sizeof(int32_t);

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(XQ_ERR_DEVICE, format("cuda: FlashInfer prefill: %s: %s", what, cudaGetErrorString(e)));
}

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

std::string refusal(const xq_paged_plan& p, int64_t total_rows) {
  if (p.head_dim != kHeadDim) return format("head_dim %lld (it is built for 128)", static_cast<long long>(p.head_dim));
  if (p.kv_heads <= 0 || p.heads % p.kv_heads != 0)
    return format("%lld query heads over %lld KV heads", static_cast<long long>(p.heads),
                  static_cast<long long>(p.kv_heads));
  if (p.kv_dtype != XQ_DTYPE_BF16) return "a pool that is not BF16";
  if (p.seqs > kMaxSeqs)
    return format("%lld sequences (at most %lld)", static_cast<long long>(p.seqs), static_cast<long long>(kMaxSeqs));
  if (p.block_size <= 0 || p.table_ld < 1) return "no block table";
  // Its 32-bit offsets (prefill.cuh): indptr in int32; a request's first key
  // as indptr x page size + chunk start, q and output rows as q_indptr x
  // heads x head_dim, in uint32. Our indptr runs to seqs x table_ld.
  if (p.seqs * p.table_ld * p.block_size > UINT32_MAX || total_rows * p.heads * p.head_dim > UINT32_MAX)
    return format("%lld sequences x %lld table entries x %lld slots, %lld rows x %lld heads x %lld (past its 32-bit "
                  "offsets)",
                  static_cast<long long>(p.seqs), static_cast<long long>(p.table_ld), static_cast<long long>(p.block_size),
                  static_cast<long long>(total_rows), static_cast<long long>(p.heads), static_cast<long long>(p.head_dim));
  for (int64_t s = 0; s < p.seqs; ++s)
    if (p.seq_kv_lens[s] > p.table_ld * p.block_size)
      return format("sequence %lld's %d keys past its table of %lld blocks", static_cast<long long>(s),
                    p.seq_kv_lens[s], static_cast<long long>(p.table_ld));
  return "";
}

// FlashInfer's FA2 kernel, causal, at the query tile its plan chose (16 for
// steps of mostly decode rows, 64 or 128 for prompt chunks: scheduler.cuh
// FA2DetermineCtaTileQ).
cudaError_t launch_causal(int64_t cta_tile_q, const Params& p, KV* tmp_v, float* tmp_s, cudaStream_t stream) {
  auto run = [&](auto tile) {
    return flashinfer::BatchPrefillWithPagedKVCacheDispatched<
        /*SAME_KV_STRIDES=*/true, decltype(tile)::value, kHeadDim, kHeadDim, flashinfer::PosEncodingMode::kNone,
        /*USE_FP16_QK_REDUCTION=*/false, flashinfer::MaskMode::kCausal, /*USE_TOKEN_HEAD_SF=*/false, Variant>(
        p, tmp_v, tmp_s, pdl_enabled(), stream);
  };
  switch (cta_tile_q) {
    case 16: return run(std::integral_constant<uint32_t, 16>{});
    case 64: return run(std::integral_constant<uint32_t, 64>{});
    case 128: return run(std::integral_constant<uint32_t, 128>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

struct FlashInferPrefill::State {
  // Plan arrays, kIntBytes (FlashInfer's region, then qo_indptr, indptr, last_page_len).
  PlanBuffers buffers;
  char* ws = nullptr;  // the provider's workspace: BF16 queries, then split-KV partials
  size_t q_bytes = 0;
  flashinfer::PrefillPlanInfo info;
  xq_paged_plan shape{};  // seqs = 0: no plan
  int64_t total_rows = 0;
  std::vector<int32_t> qo_indptr, page_indptr;
};

FlashInferPrefill::FlashInferPrefill() : s_(std::make_unique<State>()) {}
FlashInferPrefill::~FlashInferPrefill() = default;

bool FlashInferPrefill::plan(const xq_paged_plan& p, cudaStream_t stream, void* (*workspace)(void* ctx, size_t bytes),
                             void* ctx, std::string* why) {
  State& s = *s_;
  s.shape.seqs = 0;
  if (p.seqs <= 0) return false;
  int64_t total_rows = 0;
  for (int64_t i = 0; i < p.seqs; ++i) total_rows += p.seq_rows[i];
  *why = refusal(p, total_rows);
  if (!why->empty()) return false;
  // The host copy is rewritten below: the previous plan's copy out of it must have run.
  check(s.buffers.prepare(kIntBytes), "plan buffers, or the previous plan's copy");
  // FlashInfer's own checks throw flashinfer::Error: then this step runs ours, with its reason.
  try {
    return plan_arrays(p, total_rows, stream, workspace, ctx, why);
  } catch (const flashinfer::Error& e) {
    s.shape.seqs = 0;
    *why = std::string("FlashInfer's plan: ") + e.what();
    return false;
  }
}

bool FlashInferPrefill::plan_arrays(const xq_paged_plan& p, int64_t total_rows, cudaStream_t stream,
                                    void* (*workspace)(void* ctx, size_t bytes), void* ctx, std::string* why) {
  State& s = *s_;
  char* const dev = s.buffers.device();
  char* const host = s.buffers.pinned();
  const auto seqs = static_cast<uint32_t>(p.seqs), page = static_cast<uint32_t>(p.block_size);
  // Query rows and pages per request, as FlashInfer's plan reads them (CSR offsets).
  s.qo_indptr.assign(seqs + 1, 0);
  s.page_indptr.assign(seqs + 1, 0);
  for (uint32_t i = 0; i < seqs; ++i) {
    s.qo_indptr[i + 1] = s.qo_indptr[i] + p.seq_rows[i];
    s.page_indptr[i + 1] = s.page_indptr[i] + static_cast<int32_t>((p.seq_kv_lens[i] + page - 1) / page);
  }
  size_t float_bytes = 0, int_bytes = 0;
  check(flashinfer::PrefillPlanWorkspaceSize<int32_t>(
            float_bytes, int_bytes, s.qo_indptr.data(), s.page_indptr.data(), static_cast<uint32_t>(total_rows),
            seqs, static_cast<uint32_t>(p.heads), static_cast<uint32_t>(p.kv_heads), kHeadDim, kHeadDim, page,
            /*enable_cuda_graph=*/false, /*sizeof_dtype_o=*/sizeof(KV), /*window_left=*/-1,
            /*fixed_split_size=*/-1, /*disable_split_kv=*/false, /*num_colocated_ctas=*/0, /*uniform_q_len=*/0,
            /*fixed_uniform_q_len=*/false, stream, /*kv_dtype_bytes=*/sizeof(KV)),
        "workspace size");
  if (int_bytes > kPlanBytes) {
    *why = format("a plan of %zu bytes (at most %zu)", int_bytes, kPlanBytes);
    return false;
  }
  s.q_bytes = align256(static_cast<size_t>(total_rows * p.heads * p.head_dim) * sizeof(KV));
  s.ws = static_cast<char*>(workspace(ctx, s.q_bytes + std::max<size_t>(float_bytes, 256)));
  check(flashinfer::PrefillPlan<int32_t>(s.ws + s.q_bytes, float_bytes, dev, host, kPlanBytes, s.info,
                                         s.qo_indptr.data(), s.page_indptr.data(), static_cast<uint32_t>(total_rows),
                                         seqs, static_cast<uint32_t>(p.heads), static_cast<uint32_t>(p.kv_heads),
                                         kHeadDim, kHeadDim, page, /*enable_cuda_graph=*/false,
                                         /*sizeof_dtype_o=*/sizeof(KV), /*window_left=*/-1, /*fixed_split_size=*/-1,
                                         /*disable_split_kv=*/false, /*num_colocated_ctas=*/0, /*uniform_q_len=*/0,
                                         /*fixed_uniform_q_len=*/false, stream, /*kv_dtype_bytes=*/sizeof(KV)),
        "plan");
  // Our per-sequence tables as FlashInfer's page list (flashinfer_prefill.hpp):
  // qo_indptr, then indptr (sequence s's pages from s * table_ld), then
  // last_page_len, so that (table_ld - 1) * block_size + last = len_s.
  auto* qo = reinterpret_cast<int32_t*>(host + kPlanBytes);
  int32_t* indptr = qo + seqs + 1;
  int32_t* last = indptr + seqs + 1;
  std::copy(s.qo_indptr.begin(), s.qo_indptr.end(), qo);
  for (uint32_t i = 0; i <= seqs; ++i) indptr[i] = static_cast<int32_t>(i * p.table_ld);
  for (uint32_t i = 0; i < seqs; ++i)  // in int32: seqs x table_ld x block_size is within 2^32 (refusal)
    last[i] = static_cast<int32_t>(p.seq_kv_lens[i] - (p.table_ld - 1) * p.block_size);
  check(cudaMemcpyAsync(dev + kPlanBytes, host + kPlanBytes, (3 * size_t{seqs} + 2) * sizeof(int32_t),
                        cudaMemcpyHostToDevice, stream),
        "plan copy");
  check(s.buffers.copied(stream), "event");
  s.shape = p;
  s.shape.seq_rows = s.shape.seq_kv_lens = nullptr;
  s.total_rows = total_rows;
  return true;
}

bool FlashInferPrefill::run(const PagedAttentionArgs& a, cudaStream_t stream) {
  State& s = *s_;
  char* const dev = s.buffers.device();
  const xq_paged_plan& p = s.shape;
  if (p.seqs == 0 || a.n_seq != p.seqs || a.skip_tiles || a.T != s.total_rows || a.table_ld != p.table_ld ||
      a.BS != p.block_size || a.H != p.heads || a.KVH != p.kv_heads || a.D != p.head_dim ||
      a.pool_type != DType::BF16 || a.out_type != DType::BF16)
    return false;
  KV* q = reinterpret_cast<KV*>(s.ws);
  check(convert(a.q, DType::F32, q, DType::BF16, a.T * a.H * a.D, stream), "queries to BF16");
  const auto seqs = static_cast<uint32_t>(p.seqs);
  auto* qo_indptr = reinterpret_cast<int32_t*>(dev + kPlanBytes);
  int32_t* indptr = qo_indptr + seqs + 1;
  int32_t* last = indptr + seqs + 1;
  flashinfer::paged_kv_t<KV, int32_t> kv(
      static_cast<uint32_t>(a.KVH), static_cast<uint32_t>(a.BS), static_cast<uint32_t>(a.D), seqs,
      flashinfer::QKVLayout::kNHD, static_cast<KV*>(const_cast<void*>(a.kpool)),
      static_cast<KV*>(const_cast<void*>(a.vpool)), const_cast<int32_t*>(a.table) + 2 * a.T, indptr, last);
  Params params(q, kv, /*maybe_custom_mask=*/nullptr, qo_indptr, /*maybe_mask_indptr=*/nullptr,
                /*maybe_q_rope_offset=*/nullptr, static_cast<KV*>(a.out), /*lse=*/nullptr,
                /*maybe_alibi_slopes=*/nullptr, static_cast<uint32_t>(a.H), /*q_stride_n=*/static_cast<int32_t>(a.H * a.D),
                /*q_stride_h=*/static_cast<int32_t>(a.D), /*window_left=*/-1, /*logits_soft_cap=*/0.f, a.scale,
                /*rope_scale=*/1.f, /*rope_theta=*/1e4f);
  const auto& i = s.info;
  params.request_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.request_indices_offset);
  params.qo_tile_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.qo_tile_indices_offset);
  params.kv_tile_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.kv_tile_indices_offset);
  params.o_indptr = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.o_indptr_offset);
  params.kv_chunk_size_ptr = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.kv_chunk_size_ptr_offset);
  params.padded_batch_size = static_cast<uint32_t>(i.padded_batch_size);
  params.max_total_num_rows = static_cast<uint32_t>(i.total_num_rows);
  KV* tmp_v = nullptr;
  float* tmp_s = nullptr;
  if (i.split_kv) {
    char* partials = s.ws + s.q_bytes;
    params.merge_indptr = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.merge_indptr_offset);
    tmp_v = flashinfer::GetPtrFromBaseOffset<KV>(partials, i.v_offset);
    tmp_s = flashinfer::GetPtrFromBaseOffset<float>(partials, i.s_offset);
  }
  check(launch_causal(i.cta_tile_q, params, tmp_v, tmp_s, stream), "launch");
  return true;
}

}  // namespace xqcuda
