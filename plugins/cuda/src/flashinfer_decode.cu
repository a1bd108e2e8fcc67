// flashinfer_decode.cu: FlashInferDecode (flashinfer_decode.hpp): the plan,
// made as FlashInfer's DecodePlan makes it in CUDA-graph mode, and the
// launch with BF16 output (F32: flashinfer_decode_f32.cu).
#include "flashinfer_decode.hpp"

#include <xquant/sdk/error.hpp>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "flashinfer_decode.cuh"
#include "flashinfer_plan_buffers.hpp"

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

// FlashInfer's plan arrays (request and tile indices, o_indptr, the chunk
// size, the valid mask: padded batch x 13 bytes) fit well within this; our
// per-row length arrays follow it.
constexpr size_t kPlanBytes = size_t{1} << 20;
constexpr int64_t kMaxRows = 16384;
constexpr size_t kIntBytes = kPlanBytes + (2 * kMaxRows + 1) * sizeof(int32_t);

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(XQ_ERR_DEVICE, format("cuda: FlashInfer decode: %s: %s", what, cudaGetErrorString(e)));
}

// FlashInfer's work estimation (the occupancy its launch shape comes from)
// is instantiated per GQA group; `f` gets the group as a constant.
template <uint32_t G>
constexpr auto kEstimate = &flashinfer::BatchDecodeWithPagedKVCacheWorkEstimationDispatched<
    G, fi::kHeadDim, fi::kNoRope, fi::Variant, fi::Params<__nv_bfloat16>>;

template <class F>
cudaError_t with_group(int64_t group, F&& f) {
  switch (group) {
    case 1: return f(std::integral_constant<uint32_t, 1>{});
    case 2: return f(std::integral_constant<uint32_t, 2>{});
    case 4: return f(std::integral_constant<uint32_t, 4>{});
    default: return f(std::integral_constant<uint32_t, 8>{});
  }
}

std::string refusal(const xq_paged_plan& p) {
  const int64_t group = p.kv_heads > 0 && p.heads % p.kv_heads == 0 ? p.heads / p.kv_heads : 0;
  if (p.head_dim != fi::kHeadDim) return format("head_dim %lld (it is built for 128)", static_cast<long long>(p.head_dim));
  if (group != 1 && group != 2 && group != 4 && group != 8)
    return format("%lld query heads over %lld KV heads (groups 1, 2, 4, 8)", static_cast<long long>(p.heads),
                  static_cast<long long>(p.kv_heads));
  if (p.kv_dtype != XQ_DTYPE_BF16) return "a pool that is not BF16";
  if (p.rows > kMaxRows) return format("%lld rows (at most %lld)", static_cast<long long>(p.rows), static_cast<long long>(kMaxRows));
  if (p.block_size <= 0 || p.table_ld < 2) return "no block table";
  // Its page offsets: indptr in int32, indptr x page size in uint32 (decode.cuh).
  if (p.rows * p.table_ld > INT32_MAX || p.rows * p.table_ld * p.block_size > UINT32_MAX)
    return format("%lld rows x %lld table entries x %lld slots (past its 32-bit page offsets)",
                  static_cast<long long>(p.rows), static_cast<long long>(p.table_ld), static_cast<long long>(p.block_size));
  for (int64_t r = 0; r < p.rows; ++r)
    if (p.kv_lens[r] < 1 || p.kv_lens[r] > (p.table_ld - 1) * p.block_size)
      return format("row %lld's %d keys outside [1, %lld]", static_cast<long long>(r), p.kv_lens[r],
                    static_cast<long long>((p.table_ld - 1) * p.block_size));
  return "";
}

}  // namespace

struct FlashInferDecode::State {
  // Plan arrays, kIntBytes (FlashInfer's region, then indptr and last_page_len).
  PlanBuffers buffers;
  void* tmp = nullptr;  // split-KV partial outputs: the provider's workspace
  flashinfer::DecodePlanInfo info;
  // Workspace sizes of the last shape sized (rows, heads, block size): in
  // CUDA-graph mode they do not depend on the lengths (scheduler.cuh: split-KV
  // and the padded batch follow from rows and heads), so a step of the same
  // shape skips FlashInfer's sizing pass (a second work estimation).
  xq_paged_plan sized{};
  size_t float_bytes = 0, int_bytes = 0;
  xq_paged_plan shape{};  // rows = 0: no plan
  uint64_t runs = 0;
  std::vector<int32_t> page_indptr;
};

FlashInferDecode::FlashInferDecode() : s_(std::make_unique<State>()) {}
FlashInferDecode::~FlashInferDecode() = default;

bool FlashInferDecode::plan(const xq_paged_plan& p, cudaStream_t stream, void* (*workspace)(void* ctx, size_t bytes),
                            void* ctx, std::string* why) {
  State& s = *s_;
  s.shape.rows = 0;
  if (p.rows == 0) return false;
  *why = refusal(p);
  if (!why->empty()) return false;
  // The host copy is rewritten below: the previous plan's copy out of it must have run.
  check(s.buffers.prepare(kIntBytes), "plan buffers, or the previous plan's copy");
  char* const dev = s.buffers.device();
  char* const host = s.buffers.pinned();
  const auto rows = static_cast<uint32_t>(p.rows), heads = static_cast<uint32_t>(p.heads),
             page = static_cast<uint32_t>(p.block_size);
  const int64_t group = p.heads / p.kv_heads;
  // Pages per row, as FlashInfer's plan reads them (a CSR offset array).
  s.page_indptr.assign(rows + 1, 0);
  for (uint32_t r = 0; r < rows; ++r)
    s.page_indptr[r + 1] = s.page_indptr[r] + static_cast<int32_t>((p.kv_lens[r] + page - 1) / page);
  using P = fi::Params<__nv_bfloat16>;
  if (s.sized.rows != p.rows || s.sized.heads != p.heads || s.sized.kv_heads != p.kv_heads ||
      s.sized.block_size != p.block_size) {
    s.sized.rows = 0;
    check(with_group(group,
                     [&](auto g) {
                       return flashinfer::DecodePlanWorkspaceSize<fi::kHeadDim, fi::kNoRope, fi::Variant, P>(
                           s.float_bytes, s.int_bytes, s.page_indptr.data(), rows, heads, page,
                           /*enable_cuda_graph=*/true, stream, kEstimate<decltype(g)::value>);
                     }),
          "workspace size");
    s.sized = p;
  }
  if (s.int_bytes > kPlanBytes) {
    *why = format("a plan of %zu bytes (at most %zu)", s.int_bytes, kPlanBytes);
    return false;
  }
  s.tmp = workspace(ctx, std::max<size_t>(s.float_bytes, 256));
  check(with_group(group,
                   [&](auto g) {
                     return flashinfer::DecodePlan<fi::kHeadDim, fi::kNoRope, fi::Variant, P>(
                         s.tmp, s.float_bytes, dev, host, kPlanBytes, s.info, s.page_indptr.data(), rows,
                         heads, page, /*enable_cuda_graph=*/true, stream, kEstimate<decltype(g)::value>);
                   }),
        "plan");
  // Our table as FlashInfer's page list (flashinfer_decode.hpp). The last
  // row's list stops one entry short (its table row has table_ld - 1
  // blocks after the position, the others reach the next row's position
  // entry, never read as a page of theirs): indptr[rows] bounds every index
  // FlashInfer reads, its prefetch included, so none falls past the table.
  auto* indptr = reinterpret_cast<int32_t*>(host + kPlanBytes);
  int32_t* last = indptr + rows + 1;
  for (uint32_t r = 0; r < rows; ++r) indptr[r] = static_cast<int32_t>(r * p.table_ld);
  indptr[rows] = static_cast<int32_t>(rows * p.table_ld - 1);
  for (uint32_t r = 0; r < rows; ++r) {
    const int64_t listed = indptr[r + 1] - indptr[r];  // pages FlashInfer counts for row r
    last[r] = p.kv_lens[r] - static_cast<int32_t>((listed - 1) * p.block_size);
  }
  check(cudaMemcpyAsync(dev + kPlanBytes, host + kPlanBytes, (2 * size_t{rows} + 1) * sizeof(int32_t),
                        cudaMemcpyHostToDevice, stream),
        "plan copy");
  check(s.buffers.copied(stream), "event");
  s.shape = p;
  s.shape.kv_lens = nullptr;
  return true;
}

const xq_paged_plan* FlashInferDecode::current() const { return s_->shape.rows ? &s_->shape : nullptr; }
uint64_t FlashInferDecode::runs() const { return s_->runs; }

bool FlashInferDecode::run(const PagedAttentionArgs& a, cudaStream_t stream) {
  State& s = *s_;
  char* const dev = s.buffers.device();
  const xq_paged_plan& p = s.shape;
  if (p.rows == 0 || a.n_seq != 0 || a.skip_tiles || a.T != p.rows || a.table_ld != p.table_ld ||
      a.BS != p.block_size || a.H != p.heads || a.KVH != p.kv_heads || a.D != p.head_dim ||
      a.pool_type != DType::BF16 || (a.out_type != DType::F32 && a.out_type != DType::BF16))
    return false;
  const auto& i = s.info;
  fi::Planned planned{};
  planned.request_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.request_indices_offset);
  planned.kv_tile_indices = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.kv_tile_indices_offset);
  planned.o_indptr = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.o_indptr_offset);
  planned.kv_chunk_size = flashinfer::GetPtrFromBaseOffset<int32_t>(dev, i.kv_chunk_size_ptr_offset);
  planned.indptr = reinterpret_cast<int32_t*>(dev + kPlanBytes);
  planned.last_page_len = planned.indptr + p.rows + 1;
  planned.padded_batch_size = static_cast<uint32_t>(i.padded_batch_size);
  if (i.split_kv) {
    planned.block_valid_mask = flashinfer::GetPtrFromBaseOffset<bool>(dev, i.block_valid_mask_offset);
    planned.tmp_v = static_cast<char*>(s.tmp) + i.v_offset;
    planned.tmp_s = reinterpret_cast<float*>(static_cast<char*>(s.tmp) + i.s_offset);
  }
  const cudaError_t e = a.out_type == DType::F32 ? fi::launch_f32(a, planned, stream)
                                                 : fi::launch<__nv_bfloat16>(a, planned, stream);
  check(e, "launch");
  ++s.runs;
  return true;
}

}  // namespace xqcuda
