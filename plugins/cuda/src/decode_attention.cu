// decode_attention.cu: split-K ATTENTION over a contiguous KV cache
// (decode_attention.hpp): the shared split-K kernel (split_k_attention.cuh)
// with keys addressed as [S, KVH, D] rows, row t seeing keys 0 .. start + t.
#include "decode_attention.hpp"
#include "split_k_launch.cuh"

namespace xqcuda {

namespace {

int64_t max_keys(const DecodeAttentionArgs& a) { return a.start + a.T; }

}  // namespace

bool decode_attention_fits(const DecodeAttentionArgs& a) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return (a.kv_type == DType::F32 || a.kv_type == DType::BF16) && a.D > 0 && a.D % 8 == 0 && a.D <= 256 &&
         a.KVH > 0 && a.H % a.KVH == 0 && a.H / a.KVH <= 16 && aligned(a.k) && aligned(a.v);
}

int decode_attention_splits(const DecodeAttentionArgs& a, int sm_count) {
  return split_k_splits(a.T * a.KVH, max_keys(a), sm_count);
}

size_t decode_attention_workspace(const DecodeAttentionArgs& a, int splits) {
  return split_k_workspace(a.T, a.H, a.D, splits);
}

cudaError_t decode_attention(const DecodeAttentionArgs& a, int splits, void* workspace, cudaStream_t stream) {
  // q has the cache's dtype here (Q_LIKE_KV).
  const split_k::Launch l{a.q, a.k, a.v, a.kv_type == DType::BF16, a.T, a.H, a.KVH, a.D, max_keys(a), a.scale,
                          a.out, a.out_type};
  return split_k::attention</*Q_LIKE_KV=*/true>(l, split_k::ContiguousKeys{a.start}, splits, workspace, stream);
}

}  // namespace xqcuda
