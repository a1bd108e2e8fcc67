// rope_kv_op.cpp: validation and dispatch of XQ_OP_ROPE_KV on cuda
// (rope_kv.hpp; the contract is in abi/include/xquant/xq_kernel.h). One
// check answers supports_op and run_op, so the two never disagree; the
// rules are the cpu provider's (plugins/cpu/src/rope_kv.cpp) plus BF16/F16
// q|k|v rows and BF16 caches (the paged pools).
#include "rope_kv.hpp"

#include <xquant/sdk/host.hpp>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

bool present(const xq_device_tensor& t) { return t.data != nullptr; }

bool float_type(xq_dtype t, DType* out) {
  switch (t) {
    case XQ_DTYPE_F32: *out = DType::F32; return true;
    case XQ_DTYPE_F16: *out = DType::F16; return true;
    case XQ_DTYPE_BF16: *out = DType::BF16; return true;
    default: return false;
  }
}

// Row pitch of a 2-D [rows, cols] view: contiguous (strides 0 or {cols, 1})
// or a column slice (strides {ld >= cols, 1}); 0 when it is neither.
int64_t row_pitch(const xq_device_tensor& t) {
  if (t.ndim != 2 || t.shape[1] <= 0) return 0;
  if (t.strides[0] == 0 && t.strides[1] == 0) return t.shape[1];
  return t.strides[1] == 1 && t.strides[0] >= t.shape[1] ? t.strides[0] : 0;
}

bool contiguous_from(const xq_device_tensor& t, uint32_t first) {
  int64_t expect = 1;
  for (int i = static_cast<int>(t.ndim) - 1; i >= static_cast<int>(first); --i) {
    if (t.strides[i] != 0 && t.shape[i] != 1 && t.strides[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

// Elements from the K plane's start to the V plane's: strides[0], or one
// plane when the tensor is contiguous (all strides 0).
int64_t plane_pitch(const xq_device_tensor& kv) {
  return kv.strides[0] != 0 ? kv.strides[0] : kv.shape[1] * kv.shape[2] * kv.shape[3];
}

// The appended forms' [2, n] views (src[1]: positions, cache rows; src[3]:
// q and k norm weights): rows contiguous, strides[0] the distance (n when unset).
bool pair_of_rows(const xq_device_tensor& t, int64_t n) {
  return t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == n && (t.strides[1] == 0 || t.strides[1] == 1);
}
int64_t row_distance(const xq_device_tensor& t) { return t.strides[0] != 0 ? t.strides[0] : t.shape[1]; }

struct Need {
  std::string* why;
  bool ok = true;
  bool operator()(bool cond, const char* what) {
    if (ok && !cond) {
      ok = false;
      if (why) *why = format("cuda: ROPE_KV: %s", what);
    }
    return ok;
  }
};

}  // namespace

bool check_rope_kv_op(const xq_op& op, std::string* why) {
  Need need{why};
  const auto& q = op.dst;
  const auto* s = op.src;
  DType t;
  need(present(s[0]) && float_type(s[0].dtype, &t), "src[0] (q|k|v rows) must be F32, BF16 or F16");
  need(row_pitch(s[0]) > 0, "src[0] must be 2-D [T, (H + 2 KVH) D], contiguous or with strides {ld >= cols, 1}");
  need(present(q) && q.dtype == XQ_DTYPE_F32 && q.ndim == 3, "dst (q) must be F32 [T, H, D]");
  need(contiguous_from(q, 0), "dst (q) must be contiguous");
  need(present(s[1]) && s[1].dtype == XQ_DTYPE_I32 && (s[1].ndim == 1 || s[1].ndim == 2),
       "src[1] must be I32 [T] (positions) or [2, T] (positions, cache rows)");
  need(present(s[2]) && (s[2].dtype == XQ_DTYPE_F32 || s[2].dtype == XQ_DTYPE_BF16) && s[2].ndim == 4 &&
           s[2].shape[0] == 2,
       "src[2] must be F32 or BF16 [2, S, KVH, D] (the K and V caches)");
  if (!need.ok) return false;
  need(contiguous_from(s[2], 1), "src[2]'s planes must be contiguous [S, KVH, D]");
  const int64_t T = q.shape[0], H = q.shape[1], D = q.shape[2], KVH = s[2].shape[2];
  need(T > 0 && H > 0 && D > 0 && KVH > 0, "empty shape");
  need(s[2].shape[3] == D, "the caches' head dim differs from q's");
  need(s[0].shape[0] == T && s[0].shape[1] == (H + 2 * KVH) * D, "src[0] must be [T, (H + 2 KVH) D]");
  need(s[1].ndim == 1 ? s[1].shape[0] == T : pair_of_rows(s[1], T), "src[1] must be [T] or [2, T] with contiguous rows");
  need(op.i[0] == 0 || op.i[0] == 1, "pairing i[0] must be 0 (neox) or 1 (norm)");
  need(op.i[1] > 0 && op.i[1] <= D && op.i[1] % 2 == 0, "rotary dims i[1] must be even and in (0, D]");
  need(op.f[0] > 0.0, "theta base f[0] must be > 0");
  if (present(s[3]) && s[3].ndim == 2) {
    need(s[3].dtype == XQ_DTYPE_F32 && pair_of_rows(s[3], D), "src[3] (q/k norm weights) must be F32 [2, D]");
    need(op.f[2] >= 0.0, "norm eps f[2] must be >= 0");
  } else if (present(s[3])) {
    need(s[3].dtype == XQ_DTYPE_F32 && s[3].ndim == 1 && s[3].shape[0] == op.i[1] / 2,
         "src[3] must be F32 [rot/2] (freq factors) or [2, D] (q/k norm weights)");
  }
  return need.ok;
}

void run_rope_kv_op(const xq_op& op, cudaStream_t stream) {
  std::string why;
  if (!check_rope_kv_op(op, &why)) throw Error(XQ_ERR_UNSUPPORTED, why);
  const auto* s = op.src;
  RopeKvArgs a;
  a.qkv = s[0].data;
  float_type(s[0].dtype, &a.qkv_type);
  a.ld = row_pitch(s[0]);
  a.T = op.dst.shape[0];
  a.H = op.dst.shape[1];
  a.D = op.dst.shape[2];
  a.KVH = s[2].shape[2];
  a.pos = static_cast<const int32_t*>(s[1].data);
  if (s[1].ndim == 2) a.cache_rows = a.pos + row_distance(s[1]);
  a.q = static_cast<float*>(op.dst.data);
  a.k_cache = s[2].data;
  a.cache_type = s[2].dtype == XQ_DTYPE_BF16 ? DType::BF16 : DType::F32;
  a.S = s[2].shape[1];
  a.v_cache = static_cast<char*>(s[2].data) + plane_pitch(s[2]) * (s[2].dtype == XQ_DTYPE_BF16 ? 2 : 4);
  a.neox = op.i[0] == 0;
  a.rot = op.i[1];
  a.base = static_cast<float>(op.f[0]);
  a.pos_scale = op.f[1] == 0.0 ? 1.0f : static_cast<float>(op.f[1]);
  if (present(s[3]) && s[3].ndim == 2) {
    a.q_norm = static_cast<const float*>(s[3].data);
    a.k_norm = a.q_norm + row_distance(s[3]);
    a.eps = static_cast<float>(op.f[2]);
  } else if (present(s[3])) {
    a.factors = static_cast<const float*>(s[3].data);
  }
  const cudaError_t e = rope_kv(a, stream);
  if (e != cudaSuccess) throw Error(XQ_ERR_DEVICE, format("cuda: ROPE_KV launch failed: %s", cudaGetErrorString(e)));
}

}  // namespace xqcuda
