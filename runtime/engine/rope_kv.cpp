// rope_kv.cpp: builds XQ_OP_ROPE_KV for the device decode path (rope_kv.hpp;
// the contract is in abi/include/xquant/xq_kernel.h).
#include "engine/rope_kv.hpp"

#include <cstdlib>
#include <cstring>

#include "engine/kernels.hpp"

namespace xquant {

namespace {

// Elements from `from` to `to` (two device arrays of one element type, each
// aligned to it): the strides[0] of the op's [2, ...] views.
int64_t elements_between(const void* from, const void* to, int64_t elem) {
  return (static_cast<int64_t>(reinterpret_cast<intptr_t>(to)) - static_cast<int64_t>(reinterpret_cast<intptr_t>(from))) /
         elem;
}

}  // namespace

bool rope_kv_enabled() {
  const char* e = std::getenv("XQUANT_ROPE_KV");
  return !e || std::strcmp(e, "0") != 0;
}

xq_op rope_kv_op(const Architecture& a, xq_dtype qkv_t, int64_t rows, const void* qkv, const int32_t* pos, float* q,
                 const xq_device_tensor& k_cache, const xq_device_tensor& v_cache, const RopeKvExtras& x) {
  const int64_t NH = a.n_heads, KVH = a.n_kv_heads, HD = a.head_dim;
  int64_t cache_rows = 1;  // [S, KVH, D] or [NB, BS, KVH, D]: every axis before the last two
  for (uint32_t d = 0; d + 2 < k_cache.ndim; ++d) cache_rows *= k_cache.shape[d];
  const int64_t elem = k_cache.dtype == XQ_DTYPE_F32 ? 4 : 2;
  xq_op op = Kernels::op(XQ_OP_ROPE_KV);
  op.src[0] = dtensor(qkv_t, {rows, (NH + 2 * KVH) * HD}, qkv);
  if (x.cache_rows) {  // positions, then the rows written: [2, rows] with the distance in strides[0]
    op.src[1] = dtensor(XQ_DTYPE_I32, {2, rows}, pos);
    op.src[1].strides[0] = elements_between(pos, x.cache_rows, 4);
    op.src[1].strides[1] = 1;
  } else {
    op.src[1] = dtensor(XQ_DTYPE_I32, {rows}, pos);
  }
  // The two caches as planes of one [2, S, KVH, D] view: strides[0] is the
  // distance from K's start to V's (they are separate buffers or pools).
  op.src[2] = dtensor(k_cache.dtype, {2, cache_rows, KVH, HD}, k_cache.data);
  op.src[2].strides[0] = elements_between(k_cache.data, v_cache.data, elem);
  op.src[2].strides[1] = KVH * HD;
  op.src[2].strides[2] = HD;
  op.src[2].strides[3] = 1;
  if (x.q_norm) {
    op.src[3] = dtensor(XQ_DTYPE_F32, {2, HD}, x.q_norm);
    op.src[3].strides[0] = elements_between(x.q_norm, x.k_norm, 4);
    op.src[3].strides[1] = 1;
    op.f[2] = x.eps;
  } else if (x.factors) {
    op.src[3] = dtensor(XQ_DTYPE_F32, {HD / 2}, x.factors);
  }
  op.dst = dtensor(XQ_DTYPE_F32, {rows, NH, HD}, q);
  op.i[0] = static_cast<int64_t>(a.pairing);
  op.i[1] = HD;
  op.f[0] = a.rope_theta;
  op.f[1] = a.rope_position_scale();
  return op;
}

}  // namespace xquant
