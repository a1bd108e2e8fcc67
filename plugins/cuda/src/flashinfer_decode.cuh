// flashinfer_decode.cuh: the FlashInfer types and the launch shared by
// flashinfer_decode.cu (the plan, BF16 output) and flashinfer_decode_f32.cu
// (F32 output), one translation unit per output type: each instantiates
// FlashInfer's decode kernel for the GQA groups we plan (1, 2, 4, 8).
#pragma once

#include <cuda_bf16.h>

#include <algorithm>

#include <flashinfer/attention/decode.cuh>
#include <flashinfer/attention/default_decode_params.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>

#include "paged_attention.hpp"
#include "pdl.cuh"

namespace xqcuda::fi {

inline constexpr uint32_t kHeadDim = 128;
inline constexpr auto kNoRope = flashinfer::PosEncodingMode::kNone;
using Variant = flashinfer::DefaultAttention</*custom_mask=*/false, /*sliding_window=*/false,
                                             /*logits_soft_cap=*/false, /*alibi=*/false>;
// q F32 (ours: the kernel converts it as it loads), K/V BF16 pools, output O.
template <class O>
using Params = flashinfer::BatchDecodeParams<float, __nv_bfloat16, O, int32_t>;

// What a launch needs from the plan (device pointers into its buffers).
struct Planned {
  int32_t* request_indices;
  int32_t* kv_tile_indices;
  int32_t* o_indptr;
  int32_t* kv_chunk_size;
  bool* block_valid_mask;  // null without split-KV
  int32_t* indptr;         // [rows + 1]: r * table_ld, the last rows * table_ld - 1
  int32_t* last_page_len;  // [rows]
  void* tmp_v;             // split-KV partial outputs (O), null without split-KV
  float* tmp_s;
  uint32_t padded_batch_size;
};

// A launch as FlashInfer makes it: the kernel's dynamic shared memory
// allowed first, then launch_pdl (pdl.cuh: programmatic stream
// serialization where the provider's kernels use it; FlashInfer's kernels
// wait with griddepcontrol before reading what earlier kernels wrote).
template <class Kernel, class... Args>
cudaError_t launch_with_smem(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  return e != cudaSuccess ? e : launch_pdl(kernel, grid, block, smem, stream, args...);
}

// FlashInfer's decode over our pools and per-row table: the launch of
// decode.cuh's BatchDecodeWithPagedKVCacheDispatched and, with split-KV, of
// cascade.cuh's VariableLengthMergeStates, written out for head_dim 128 and
// GQA group G. (Those two dispatch at run time over every head dim FlashInfer
// knows, and the merge's 512-wide instantiation does not compile for F32
// partial outputs; the constants below are theirs at 128.)
template <class O, uint32_t G>
cudaError_t launch_group(Params<O> params, O* tmp_v, float* tmp_s, cudaStream_t stream) {
  using KV = __nv_bfloat16;
  constexpr uint32_t vec_size = std::max<uint32_t>(16 / sizeof(KV), kHeadDim / 32);
  constexpr uint32_t bdx = kHeadDim / vec_size, bdy = G;
  constexpr uint32_t num_threads = std::max(128u, bdx * bdy), bdz = num_threads / (bdx * bdy);
  constexpr uint32_t tile_size_per_bdx = G == 1 ? 4u : 1u;
  constexpr uint32_t num_stages_smem = 2;  // compute capability 8.0 and up
  constexpr size_t smem = std::max<size_t>(2 * num_stages_smem * tile_size_per_bdx * bdy * bdz * kHeadDim * sizeof(KV),
                                           bdz * bdy * kHeadDim * sizeof(float)) +
                          std::max<size_t>(tile_size_per_bdx * num_threads * sizeof(KV*), 2 * bdy * bdz * sizeof(float));
  auto decode = flashinfer::BatchDecodeWithPagedKVCacheKernel<kNoRope, num_stages_smem, tile_size_per_bdx, vec_size,
                                                              bdx, bdy, bdz, Variant, Params<O>>;
  const uint32_t kv_heads = params.num_qo_heads / G, rows = params.paged_kv.batch_size;
  const dim3 grid(params.padded_batch_size, kv_heads), block(bdx, bdy, bdz);
  if (!tmp_v) {
    params.partition_kv = false;
    return launch_with_smem(decode, grid, block, smem, stream, params);
  }
  params.partition_kv = true;
  O* const o = params.o;
  params.o = tmp_v;
  params.lse = tmp_s;
  cudaError_t e = launch_with_smem(decode, grid, block, smem, stream, params);
  if (e != cudaSuccess) return e;
  constexpr uint32_t m_vec = std::max<uint32_t>(16 / sizeof(O), kHeadDim / 32), m_bdx = kHeadDim / m_vec;
  constexpr uint32_t m_threads = 128, m_bdy = m_threads / m_bdx, m_stages = 4;
  constexpr size_t m_smem = m_stages * m_bdy * kHeadDim * sizeof(O) + m_threads * sizeof(float);
  auto merge = flashinfer::PersistentVariableLengthMergeStatesKernel<m_vec, m_bdx, m_bdy, m_stages, O, O, int32_t>;
  int dev = 0, sms = 0, per_sm = 0;
  if ((e = cudaGetDevice(&dev)) != cudaSuccess ||
      (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess ||
      (e = cudaFuncSetAttribute(merge, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(m_smem))) !=
          cudaSuccess ||
      (e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, merge, m_threads, m_smem)) != cudaSuccess)
    return e;
  const uint32_t heads = params.num_qo_heads;
  per_sm = std::min<int>(per_sm, static_cast<int>(flashinfer::ceil_div(rows * heads, static_cast<uint32_t>(sms))));
  return launch_pdl(merge, dim3(sms * per_sm), dim3(m_bdx, m_bdy), m_smem, stream, tmp_v, tmp_s, params.o_indptr, o,
                    static_cast<float*>(nullptr), rows, static_cast<uint32_t*>(nullptr), heads);
}

template <class O>
cudaError_t launch(const PagedAttentionArgs& a, const Planned& p, cudaStream_t stream) {
  using KV = __nv_bfloat16;
  flashinfer::paged_kv_t<KV, int32_t> kv(
      static_cast<uint32_t>(a.KVH), static_cast<uint32_t>(a.BS), static_cast<uint32_t>(a.D),
      static_cast<uint32_t>(a.T), flashinfer::QKVLayout::kNHD, static_cast<KV*>(const_cast<void*>(a.kpool)),
      static_cast<KV*>(const_cast<void*>(a.vpool)), const_cast<int32_t*>(a.table) + 1, p.indptr, p.last_page_len);
  Params<O> params(const_cast<float*>(a.q), /*q_rope_offset=*/nullptr, kv, static_cast<O*>(a.out), /*lse=*/nullptr,
                   /*maybe_alibi_slopes=*/nullptr, static_cast<uint32_t>(a.H), /*q_stride_n=*/
                   static_cast<int32_t>(a.H * a.D), /*q_stride_h=*/static_cast<int32_t>(a.D), /*window_left=*/-1,
                   /*logits_soft_cap=*/0.f, a.scale, /*rope_scale=*/1.f, /*rope_theta=*/1e4f);
  params.request_indices = p.request_indices;
  params.kv_tile_indices = p.kv_tile_indices;
  params.o_indptr = p.o_indptr;
  params.kv_chunk_size_ptr = p.kv_chunk_size;
  params.block_valid_mask = p.block_valid_mask;
  params.padded_batch_size = p.padded_batch_size;
  O* tmp_v = static_cast<O*>(p.tmp_v);
  switch (a.H / a.KVH) {
    case 1: return launch_group<O, 1>(params, tmp_v, p.tmp_s, stream);
    case 2: return launch_group<O, 2>(params, tmp_v, p.tmp_s, stream);
    case 4: return launch_group<O, 4>(params, tmp_v, p.tmp_s, stream);
    case 8: return launch_group<O, 8>(params, tmp_v, p.tmp_s, stream);
    default: return cudaErrorInvalidValue;  // never planned (flashinfer_decode.cu's refusal)
  }
}

cudaError_t launch_f32(const PagedAttentionArgs& a, const Planned& p, cudaStream_t stream);

}  // namespace xqcuda::fi
