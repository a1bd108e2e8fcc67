// decode_attention_op.cpp: ATTENTION ops (contiguous KV cache) routed to the
// split-K kernel of decode_attention.cu when their shape and dtypes fit.
#include "decode_attention.hpp"

#include <xquant/sdk/host.hpp>

namespace xqcuda {

namespace {

bool kv_dtype(xq_dtype t, DType* out) {
  if (t == XQ_DTYPE_F32) *out = DType::F32;
  else if (t == XQ_DTYPE_BF16) *out = DType::BF16;
  else return false;
  return true;
}

bool out_dtype(xq_dtype t, DType* out) {
  if (t == XQ_DTYPE_F16) {
    *out = DType::F16;
    return true;
  }
  return kv_dtype(t, out);
}

}  // namespace

bool run_decode_attention_op(const xq_op& op, int sm_count, void* (*workspace)(void* ctx, size_t bytes), void* ctx,
                             cudaStream_t stream) {
  const auto* s = op.src;
  DecodeAttentionArgs a;
  if (!kv_dtype(s[0].dtype, &a.kv_type) || !out_dtype(op.dst.dtype, &a.out_type)) return false;
  a.q = s[0].data;
  a.k = s[1].data;
  a.v = s[2].data;
  a.T = s[0].shape[0];
  a.H = s[0].shape[1];
  a.D = s[0].shape[2];
  a.KVH = s[1].shape[1];
  a.start = op.i[0];
  a.scale = static_cast<float>(op.f[0]);
  a.out = op.dst.data;
  if (!decode_attention_fits(a)) return false;
  const int splits = decode_attention_splits(a, sm_count);
  const size_t bytes = decode_attention_workspace(a, splits);
  void* ws = bytes ? workspace(ctx, bytes) : nullptr;
  const cudaError_t e = decode_attention(a, splits, ws, stream);
  if (e != cudaSuccess)
    throw xquant::sdk::Error(XQ_ERR_DEVICE,
                             xquant::sdk::format("cuda: ATTENTION (split-K, T=%lld, H=%lld, D=%lld, %d splits) launch "
                                                 "failed: %s",
                                                 static_cast<long long>(a.T), static_cast<long long>(a.H),
                                                 static_cast<long long>(a.D), splits, cudaGetErrorString(e)));
  return true;
}

}  // namespace xqcuda
