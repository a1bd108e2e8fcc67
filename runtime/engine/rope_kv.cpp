// rope_kv.cpp: builds XQ_OP_ROPE_KV for the device decode path (rope_kv.hpp;
// the contract is in abi/include/xquant/xq_kernel.h).
#include "engine/rope_kv.hpp"

#include <cstdlib>
#include <cstring>

#include "engine/kernels.hpp"

namespace xquant {

bool rope_kv_enabled() {
  const char* e = std::getenv("XQUANT_ROPE_KV");
  return !e || std::strcmp(e, "0") != 0;
}

xq_op rope_kv_op(const Architecture& a, xq_dtype qkv_t, int64_t rows, const void* qkv, const int32_t* pos, float* q,
                 float* k_cache, float* v_cache, int64_t cache_rows, const float* factors) {
  const int64_t NH = a.n_heads, KVH = a.n_kv_heads, HD = a.head_dim;
  xq_op op = Kernels::op(XQ_OP_ROPE_KV);
  op.src[0] = dtensor(qkv_t, {rows, (NH + 2 * KVH) * HD}, qkv);
  op.src[1] = dtensor(XQ_DTYPE_I32, {rows}, pos);
  // The two caches as planes of one [2, S, KVH, D] view: strides[0] is the
  // distance from K's start to V's (they are separate rows of one buffer).
  op.src[2] = dtensor(XQ_DTYPE_F32, {2, cache_rows, KVH, HD}, k_cache);
  op.src[2].strides[0] = v_cache - k_cache;
  op.src[2].strides[1] = KVH * HD;
  op.src[2].strides[2] = HD;
  op.src[2].strides[3] = 1;
  if (factors) op.src[3] = dtensor(XQ_DTYPE_F32, {HD / 2}, factors);
  op.dst = dtensor(XQ_DTYPE_F32, {rows, NH, HD}, q);
  op.i[0] = static_cast<int64_t>(a.pairing);
  op.i[1] = HD;
  op.f[0] = a.rope_theta;
  op.f[1] = a.rope_position_scale();
  return op;
}

}  // namespace xquant
