// paged_attention_check.cpp: validation and dispatch of KV_WRITE and
// PAGED_ATTENTION on the `cuda` provider (paged_attention.hpp). One check
// answers both supports_op and run_op.
#include "paged_attention.hpp"
#include "flashinfer_decode.hpp"
#include "flashinfer_prefill.hpp"
#include "prefill_attention.hpp"

#include <xquant/sdk/host.hpp>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

bool present(const xq_device_tensor& t) { return t.data != nullptr; }
bool contiguous(const xq_device_tensor& t) {
  if (t.ndim == 0 || t.ndim > 4) return false;
  int64_t expect = 1;
  bool all_zero = true;
  for (uint32_t i = 0; i < t.ndim; ++i) all_zero = all_zero && t.strides[i] == 0;
  if (all_zero) return true;
  for (int i = static_cast<int>(t.ndim) - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}
int64_t numel(const xq_device_tensor& t) {
  int64_t n = 1;
  for (uint32_t i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return t.ndim ? n : 0;
}
bool row_strided(const xq_device_tensor& t) {
  return t.ndim == 2 && t.strides[1] == 1 && t.strides[0] >= t.shape[1] && t.shape[1] > 0;
}
bool float_type(xq_dtype t, DType* out) {
  switch (t) {
    case XQ_DTYPE_F32: *out = DType::F32; return true;
    case XQ_DTYPE_F16: *out = DType::F16; return true;
    case XQ_DTYPE_BF16: *out = DType::BF16; return true;
    default: return false;
  }
}
bool pool_type(xq_dtype t, DType* out) {
  if (t == XQ_DTYPE_F32) *out = DType::F32;
  else if (t == XQ_DTYPE_BF16) *out = DType::BF16;
  else return false;
  return true;
}

struct Need {
  const char* name;
  std::string* why;
  bool ok = true;
  bool operator()(bool cond, const char* what) {
    if (ok && !cond) {
      ok = false;
      if (why) *why = format("cuda: %s: %s", name, what);
    }
    return ok;
  }
};

bool check_pool(Need& need, const xq_device_tensor& p, const char* what) {
  DType d;
  need(present(p), what);
  need(contiguous(p) && p.ndim == 4, "pools must be contiguous [NB, BS, KVH, D]");
  return need(pool_type(p.dtype, &d), "pools must be F32 or BF16");
}

}  // namespace

bool is_paged_op(xq_op_type t) { return t == XQ_OP_KV_WRITE || t == XQ_OP_PAGED_ATTENTION; }

bool check_paged_op(const xq_op& op, std::string* why) {
  const auto& d = op.dst;
  const auto* s = op.src;
  DType dt;
  if (op.type == XQ_OP_KV_WRITE) {
    Need need{"KV_WRITE", why};
    if (!check_pool(need, d, "dst (pool) is missing")) return false;
    need(present(s[0]) && (contiguous(s[0]) || row_strided(s[0])), "src[0] must be contiguous or 2-D {ld, 1}");
    need(float_type(s[0].dtype, &dt), "src[0] must be F32, BF16 or F16");
    need(s[0].ndim >= 1 && s[0].shape[s[0].ndim - 1] * (s[0].ndim == 3 ? s[0].shape[1] : 1) > 0, "src[0] is empty");
    if (!need.ok) return false;
    const int64_t row = s[0].ndim == 3 ? s[0].shape[1] * s[0].shape[2] : s[0].shape[s[0].ndim - 1];
    need(row == d.shape[2] * d.shape[3], "src[0] rows must hold KVH * D elements");
    need(present(s[1]) && s[1].dtype == XQ_DTYPE_I32 && contiguous(s[1]), "src[1] (slots) must be contiguous I32");
    need(numel(s[1]) == numel(s[0]) / row, "src[1] must hold one slot per row");
    return need.ok;
  }
  Need need{"PAGED_ATTENTION", why};
  need(present(s[0]) && s[0].dtype == XQ_DTYPE_F32 && contiguous(s[0]) && s[0].ndim == 3, "src[0] (q) must be F32 [T, H, D]");
  if (!check_pool(need, s[1], "src[1] (K pool) is missing") || !check_pool(need, s[2], "src[2] (V pool) is missing"))
    return false;
  need(present(d) && contiguous(d) && float_type(d.dtype, &dt) && d.ndim == 3, "dst must be F32/BF16/F16 [T, H, D]");
  const int64_t n_seq = op.i[1];
  need(n_seq >= 0, "i[1] (sequences with one block table each) must be >= 0");
  need(present(s[3]) && s[3].dtype == XQ_DTYPE_I32 && contiguous(s[3]) && s[3].ndim == (n_seq > 0 ? 1 : 2),
       n_seq > 0 ? "with i[1] = n_seq src[3] (positions, sequence indices, tables) must be I32 [2T + n_seq * MB]"
                 : "src[3] (rows' positions and block tables) must be I32 [T, 1 + MB]");
  if (!need.ok) return false;
  const int64_t T = s[0].shape[0], H = s[0].shape[1], D = s[0].shape[2], KVH = s[1].shape[2];
  need(s[1].dtype == s[2].dtype, "K and V pools must share a dtype");
  // The split-K kernel reads K rows with 16-byte loads (split_k_attention.cuh).
  need(reinterpret_cast<uintptr_t>(s[1].data) % 16 == 0 && reinterpret_cast<uintptr_t>(s[2].data) % 16 == 0,
       "K and V pools must be 16-byte aligned");
  for (int i = 0; i < 4; ++i) need(s[1].shape[i] == s[2].shape[i], "K and V pools differ in shape");
  need(s[1].shape[3] == D, "pool head_dim differs from q's");
  need(KVH > 0 && H % KVH == 0 && H / KVH <= 16, "heads must be a multiple (at most 16x) of kv heads");
  need(D <= 256 && D % 8 == 0, "head_dim must be a multiple of 8, at most 256");
  need(d.shape[0] == T && d.shape[1] == H && d.shape[2] == D, "dst must be [T, H, D]");
  if (n_seq > 0)
    need(s[3].shape[0] >= 2 * T + n_seq && (s[3].shape[0] - 2 * T) % n_seq == 0,
         "src[3] must be [2T + n_seq * MB] with MB >= 1");
  else
    need(s[3].shape[0] == T && s[3].shape[1] >= 2, "src[3] must be [T, 1 + MB] with MB >= 1");
  return need.ok;
}

void run_paged_op(const xq_op& op, int sm_count, void* (*workspace)(void*, size_t), void* ctx, cudaStream_t stream,
                  FlashInferDecode* flashinfer, FlashInferPrefill* flashinfer_prefill) {
  std::string why;
  if (!check_paged_op(op, &why)) throw Error(XQ_ERR_UNSUPPORTED, why);
  const auto& d = op.dst;
  const auto* s = op.src;
  DType st = DType::F32, pt = DType::F32, ot = DType::F32;
  cudaError_t e;
  if (op.type == XQ_OP_KV_WRITE) {
    float_type(s[0].dtype, &st);
    pool_type(d.dtype, &pt);
    const int64_t row = d.shape[2] * d.shape[3];
    const int64_t T = numel(s[1]);
    const int64_t ld = row_strided(s[0]) && !contiguous(s[0]) ? s[0].strides[0] : row;
    e = kv_write(s[0].data, st, ld, T, row, static_cast<const int32_t*>(s[1].data), d.data, pt, stream);
  } else {
    PagedAttentionArgs a;
    a.q = static_cast<const float*>(s[0].data);
    a.kpool = s[1].data;
    a.vpool = s[2].data;
    pool_type(s[1].dtype, &a.pool_type);
    a.table = static_cast<const int32_t*>(s[3].data);
    a.n_seq = op.i[1];
    a.T = s[0].shape[0];
    a.H = s[0].shape[1];
    a.D = s[0].shape[2];
    a.KVH = s[1].shape[2];
    a.BS = s[1].shape[1];
    // table_ld: one table's width (MB) per sequence, a row's (1 + MB) per row.
    a.table_ld = a.n_seq > 0 ? (s[3].shape[0] - 2 * a.T) / a.n_seq : s[3].shape[1];
    a.max_keys = (a.n_seq > 0 ? a.table_ld : a.table_ld - 1) * a.BS;
    a.scale = static_cast<float>(op.f[0]);
    a.out = d.data;
    float_type(d.dtype, &ot);
    a.out_type = ot;
#if XQUANT_CUDA_FLASHINFER
    if (flashinfer && flashinfer->run(a, stream)) return;
    if (flashinfer_prefill && flashinfer_prefill->run(a, stream)) return;
#else
    (void)flashinfer, (void)flashinfer_prefill;
#endif
    const int splits = paged_attention_splits(a.T, a.KVH, a.max_keys, sm_count);
    // Prefill tiles (many rows of one sequence) go to the tensor-core kernel
    // first; the decode kernel then skips their rows. op.i[0] is the engine's
    // hint: the most rows one sequence has in this op (0 = unknown).
    const bool prefill = prefill_attention_applies(a, op.i[0]);
    const size_t split_bytes = (paged_attention_workspace(a.T, a.H, a.D, splits) + 255) / 256 * 256;
    const size_t bytes = split_bytes + (prefill ? prefill_attention_workspace(a.T) : 0);
    char* ws = bytes ? static_cast<char*>(workspace(ctx, bytes)) : nullptr;
    e = cudaSuccess;
    if (prefill) {
      int32_t* flags = reinterpret_cast<int32_t*>(ws + split_bytes);
      e = prefill_attention(a, flags, stream);
      a.skip_tiles = flags;
      a.skip_tile_rows = kPrefillTileRows;
    }
    if (e == cudaSuccess) e = paged_attention(a, splits, split_bytes ? ws : nullptr, stream);
  }
  if (e != cudaSuccess)
    throw Error(XQ_ERR_DEVICE, format("cuda: %s launch failed: %s",
                                      op.type == XQ_OP_KV_WRITE ? "KV_WRITE" : "PAGED_ATTENTION", cudaGetErrorString(e)));
}

}  // namespace xqcuda
