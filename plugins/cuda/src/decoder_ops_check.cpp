// decoder_ops_check.cpp: validation and dispatch of the decoder's dense ops
// on the `cuda` provider (decoder_ops.hpp). One check per op answers both
// supports_op and run_op, so the two never disagree; the rules mirror the
// CPU provider's (plugins/cpu/src/dense_ops.cpp check_dense) plus BF16/F16.
#include "decoder_ops.hpp"
#include "fused_ops.hpp"
#include "argmax_vec.hpp"
#include "row_norms.hpp"

#include <xquant/sdk/host.hpp>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

bool present(const xq_device_tensor& t) { return t.data != nullptr; }

bool contiguous(const xq_device_tensor& t) {
  if (t.ndim == 0 || t.ndim > 4) return false;
  bool all_zero = true;
  for (uint32_t i = 0; i < t.ndim; ++i) all_zero = all_zero && t.strides[i] == 0;
  if (all_zero) return true;
  int64_t expect = 1;
  for (int i = static_cast<int>(t.ndim) - 1; i >= 0; --i) {
    if (t.shape[i] != 1 && t.strides[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

int64_t cols_of(const xq_device_tensor& t) { return t.ndim ? t.shape[t.ndim - 1] : 0; }
int64_t numel(const xq_device_tensor& t) {
  int64_t n = 1;
  for (uint32_t i = 0; i < t.ndim; ++i) n *= t.shape[i];
  return t.ndim ? n : 0;
}
int64_t rows_of(const xq_device_tensor& t) { return cols_of(t) ? numel(t) / cols_of(t) : 0; }

// A 2-D [rows, cols] view whose rows sit `ld` elements apart (strides
// {ld, 1}, ld >= cols): a column slice of a wider row-major matrix.
bool row_strided(const xq_device_tensor& t) {
  return t.ndim == 2 && t.strides[1] == 1 && t.strides[0] >= t.shape[1] && t.shape[1] > 0;
}
// Elements between row starts: the stride of a row-strided view, else cols.
int64_t row_pitch(const xq_device_tensor& t) { return contiguous(t) ? cols_of(t) : t.strides[0]; }

bool float_type(xq_dtype t, DType* out) {
  switch (t) {
    case XQ_DTYPE_F32: *out = DType::F32; return true;
    case XQ_DTYPE_F16: *out = DType::F16; return true;
    case XQ_DTYPE_BF16: *out = DType::BF16; return true;
    default: return false;
  }
}
DType float_type(xq_dtype t) {
  DType d = DType::F32;
  float_type(t, &d);
  return d;
}

const char* op_name(xq_op_type t) {
  switch (t) {
    case XQ_OP_GET_ROWS: return "GET_ROWS";
    case XQ_OP_RMS_NORM: return "RMS_NORM";
    case XQ_OP_ROPE: return "ROPE";
    case XQ_OP_ATTENTION: return "ATTENTION";
    case XQ_OP_SWIGLU: return "SWIGLU";
    case XQ_OP_ADD: return "ADD";
    case XQ_OP_MUL: return "MUL";
    case XQ_OP_CONVERT: return "CONVERT";
    case XQ_OP_ADD_RMS_NORM: return "ADD_RMS_NORM";
    case XQ_OP_ARGMAX: return "ARGMAX";
    default: return "?";
  }
}

// Collects the first failed requirement as "cuda: OP: what".
struct Need {
  const xq_op& op;
  std::string* why;
  bool ok = true;
  bool operator()(bool cond, const char* what) {
    if (ok && !cond) {
      ok = false;
      if (why) *why = format("cuda: %s: %s", op_name(op.type), what);
    }
    return ok;
  }
  bool tensor(const xq_device_tensor& t, const char* what) {
    DType d;
    if (!(*this)(present(t), what)) return false;
    if (!(*this)(contiguous(t), "tensors must be contiguous")) return false;
    return (*this)(float_type(t.dtype, &d), "float tensors must be F32, BF16 or F16");
  }
  // Contiguous, or row-strided (row_strided above).
  bool rows(const xq_device_tensor& t, const char* what) {
    DType d;
    if (!(*this)(present(t), what)) return false;
    if (!(*this)(contiguous(t) || row_strided(t), "tensors must be contiguous or 2-D with strides {ld >= cols, 1}"))
      return false;
    return (*this)(float_type(t.dtype, &d), "float tensors must be F32, BF16 or F16");
  }
};

}  // namespace

bool is_decoder_op(xq_op_type t) {
  switch (t) {
    case XQ_OP_GET_ROWS:
    case XQ_OP_RMS_NORM:
    case XQ_OP_ROPE:
    case XQ_OP_ATTENTION:
    case XQ_OP_SWIGLU:
    case XQ_OP_ADD:
    case XQ_OP_MUL:
    case XQ_OP_CONVERT:
    case XQ_OP_ADD_RMS_NORM:
    case XQ_OP_ARGMAX: return true;
    default: return false;
  }
}

bool check_decoder_op(const xq_op& op, std::string* why) {
  Need need{op, why};
  const auto& d = op.dst;
  const auto* s = op.src;
  switch (op.type) {
    case XQ_OP_GET_ROWS:
      need.tensor(s[0], "src[0] (table) is missing");
      need(s[0].ndim == 2, "table must be [V, D]");
      need(present(s[1]) && s[1].dtype == XQ_DTYPE_I32 && contiguous(s[1]), "src[1] (ids) must be contiguous I32");
      need.tensor(d, "dst is missing");
      need(rows_of(d) == numel(s[1]) && cols_of(d) == s[0].shape[1], "dst must be [T, D]");
      return need.ok;
    case XQ_OP_RMS_NORM:
      need.tensor(s[0], "src[0] is missing");
      need.tensor(s[1], "src[1] (weight) is missing");
      need.tensor(d, "dst is missing");
      need(numel(s[1]) == cols_of(s[0]), "weight must have D elements");
      need(numel(d) == numel(s[0]) && cols_of(d) == cols_of(s[0]), "dst must match src[0]");
      need(op.f[0] >= 0.0, "eps must be >= 0");
      return need.ok;
    case XQ_OP_ROPE: {
      need.tensor(d, "dst is missing");
      need(!present(s[0]) || s[0].data == d.data, "ROPE is in place: src[0] must be dst");
      need(d.ndim == 3, "dst must be [T, H, D]");
      need(present(s[1]) && s[1].dtype == XQ_DTYPE_I32 && contiguous(s[1]), "src[1] (positions) must be contiguous I32");
      need(numel(s[1]) == d.shape[0], "positions must have T elements");
      need(op.i[0] == 0 || op.i[0] == 1, "pairing i[0] must be 0 (neox) or 1 (norm)");
      const int64_t rot = op.i[1];
      need(rot > 0 && rot <= d.shape[2] && rot % 2 == 0, "rotary dims i[1] must be even and in (0, D]");
      need(op.f[0] > 0.0, "theta base f[0] must be > 0");
      if (present(s[2])) {
        need(s[2].dtype == XQ_DTYPE_F32 && contiguous(s[2]), "src[2] (freq factors) must be contiguous F32");
        need(numel(s[2]) == rot / 2, "freq factors must have rot/2 elements");
      }
      return need.ok;
    }
    case XQ_OP_ATTENTION: {
      need.tensor(s[0], "src[0] (q) is missing");
      need.tensor(s[1], "src[1] (k) is missing");
      need.tensor(s[2], "src[2] (v) is missing");
      need.tensor(d, "dst is missing");
      if (!need.ok) return false;
      need(s[0].ndim == 3 && s[1].ndim == 3 && s[2].ndim == 3 && d.ndim == 3, "q, k, v, dst must be 3-D");
      need(s[1].dtype == s[0].dtype && s[2].dtype == s[0].dtype, "q, k and v must share a dtype");
      const int64_t t = s[0].shape[0], h = s[0].shape[1], hd = s[0].shape[2], kvh = s[1].shape[1];
      need(kvh > 0 && h % kvh == 0, "heads must be a multiple of kv heads");
      need(s[1].shape[2] == hd && s[2].shape[2] == hd, "head dims differ");
      need(s[2].shape[0] == s[1].shape[0] && s[2].shape[1] == kvh, "k and v shapes differ");
      need(d.shape[0] == t && d.shape[1] == h && d.shape[2] == hd, "dst must be [T, H, D]");
      need(op.i[0] >= 0, "start position i[0] must be >= 0");
      need(op.i[0] + t <= s[1].shape[0], "keys must cover positions 0 .. i[0]+T-1");
      if (need.ok && op.i[0] + t + hd > attention_max_keys())
        need(false, "context too long for the shared-memory attention kernel (keys + head_dim > attention_max_keys)");
      return need.ok;
    }
    case XQ_OP_SWIGLU:
      if (row_strided(s[0]) || row_strided(s[1])) {  // gate and up: column slices of one GEMM output
        need.rows(s[0], "src[0] is missing");
        need.rows(s[1], "src[1] is missing");
        need.tensor(d, "dst is missing");
        need(s[0].ndim == 2 && s[1].ndim == 2 && s[0].shape[0] == s[1].shape[0] && s[0].shape[1] == s[1].shape[1],
             "strided src[0] and src[1] must both be [rows, cols]");
        need(numel(d) == numel(s[0]) && cols_of(d) == cols_of(s[0]), "dst must be [rows, cols]");
        return need.ok;
      }
      [[fallthrough]];
    case XQ_OP_ADD:
    case XQ_OP_MUL: {
      need.tensor(s[0], "src[0] is missing");
      need.tensor(s[1], "src[1] is missing");
      need.tensor(d, "dst is missing");
      need(numel(d) == numel(s[0]), "dst must have src[0]'s size");
      const bool same = numel(s[1]) == numel(s[0]);
      const bool bcast = op.type != XQ_OP_SWIGLU && numel(s[1]) == cols_of(s[0]);
      need(same || bcast, "src[1] must match src[0] (or be [N] broadcast on rows for ADD/MUL)");
      return need.ok;
    }
    case XQ_OP_CONVERT:
      need.rows(s[0], "src[0] is missing");
      need.tensor(d, "dst is missing");
      need(numel(d) == numel(s[0]), "dst and src[0] sizes differ");
      return need.ok;
    case XQ_OP_ADD_RMS_NORM:
      need.tensor(s[0], "src[0] (residual) is missing");
      need.tensor(s[1], "src[1] (weight) is missing");
      need.tensor(s[2], "src[2] (addend) is missing");
      need.tensor(d, "dst is missing");
      need(numel(s[1]) == cols_of(s[0]), "weight must have D elements");
      need(numel(s[2]) == numel(s[0]), "src[2] must match src[0]");
      need(numel(d) == numel(s[0]) && cols_of(d) == cols_of(s[0]), "dst must match src[0]");
      need(d.data != s[0].data, "dst must not alias src[0] (src[0] keeps the sum)");
      need(op.f[0] >= 0.0, "eps must be >= 0");
      return need.ok;
    case XQ_OP_ARGMAX:
      need.tensor(s[0], "src[0] is missing");
      need(present(d) && d.dtype == XQ_DTYPE_I32 && contiguous(d), "dst must be contiguous I32");
      need(numel(d) == rows_of(s[0]), "dst must have one element per row of src[0]");
      need(cols_of(s[0]) <= INT32_MAX, "rows longer than INT32_MAX");
      return need.ok;
    default: return need(false, "not a decoder op");
  }
}

void run_decoder_op(const xq_op& op, cudaStream_t stream) {
  std::string why;
  if (!check_decoder_op(op, &why)) throw Error(XQ_ERR_UNSUPPORTED, why);
  const auto& d = op.dst;
  const auto* s = op.src;
  cudaError_t e = cudaSuccess;
  switch (op.type) {
    case XQ_OP_GET_ROWS:
      e = get_rows(s[0].data, float_type(s[0].dtype), s[0].shape[0], s[0].shape[1], static_cast<const int32_t*>(s[1].data),
                   numel(s[1]), d.data, float_type(d.dtype), stream);
      break;
    case XQ_OP_RMS_NORM:
      if (row_norm_vec_fits(s[0].data, float_type(s[0].dtype), nullptr, DType::F32, s[1].data, float_type(s[1].dtype),
                            cols_of(s[0]), d.data, float_type(d.dtype))) {  // 16-byte kernel (row_norms.hpp)
        e = row_norm_vec(static_cast<float*>(s[0].data), nullptr, DType::F32, static_cast<const float*>(s[1].data),
                         rows_of(s[0]), cols_of(s[0]), static_cast<float>(op.f[0]), d.data, float_type(d.dtype), stream);
        break;
      }
      e = rms_norm(s[0].data, float_type(s[0].dtype), s[1].data, float_type(s[1].dtype), rows_of(s[0]), cols_of(s[0]),
                   static_cast<float>(op.f[0]), d.data, float_type(d.dtype), stream);
      break;
    case XQ_OP_ROPE:
      e = rope(d.data, float_type(d.dtype), d.shape[0], d.shape[1], d.shape[2], static_cast<const int32_t*>(s[1].data),
               op.i[0] == 0, op.i[1], static_cast<float>(op.f[0]), op.f[1] == 0.0 ? 1.0f : static_cast<float>(op.f[1]),
               present(s[2]) ? static_cast<const float*>(s[2].data) : nullptr, stream);
      break;
    case XQ_OP_ATTENTION:
      e = attention(s[0].data, s[1].data, s[2].data, float_type(s[0].dtype), s[0].shape[0], s[0].shape[1], s[1].shape[1],
                    s[0].shape[2], s[1].shape[0], op.i[0], static_cast<float>(op.f[0]), d.data, float_type(d.dtype),
                    stream);
      break;
    case XQ_OP_SWIGLU:
      // Plain [rows, cols] tensors too go through swiglu_rows (its 16-byte
      // path when types and alignment allow).
      if (row_strided(s[0]) || row_strided(s[1]) ||
          (s[0].ndim == 2 && s[1].ndim == 2 && s[1].shape[0] == s[0].shape[0] && s[1].shape[1] == s[0].shape[1] &&
           contiguous(s[0]) && contiguous(s[1]))) {
        e = swiglu_rows(s[0].data, float_type(s[0].dtype), row_pitch(s[0]), s[1].data, float_type(s[1].dtype),
                        row_pitch(s[1]), rows_of(s[0]), cols_of(s[0]), d.data, float_type(d.dtype), stream);
        break;
      }
      [[fallthrough]];
    case XQ_OP_ADD:
    case XQ_OP_MUL: {
      const Binary b = op.type == XQ_OP_SWIGLU ? Binary::SwiGlu : op.type == XQ_OP_ADD ? Binary::Add : Binary::Mul;
      e = binary(b, s[0].data, float_type(s[0].dtype), s[1].data, float_type(s[1].dtype), numel(d), numel(s[1]), d.data,
                 float_type(d.dtype), stream);
      break;
    }
    case XQ_OP_CONVERT:
      if (row_strided(s[0]) && !contiguous(s[0]))
        e = convert_rows(s[0].data, float_type(s[0].dtype), s[0].shape[0], s[0].shape[1], s[0].strides[0], d.data,
                         float_type(d.dtype), stream);
      else
        e = convert(s[0].data, float_type(s[0].dtype), d.data, float_type(d.dtype), numel(d), stream);
      break;
    case XQ_OP_ADD_RMS_NORM:
      if (row_norm_vec_fits(s[0].data, float_type(s[0].dtype), s[2].data, float_type(s[2].dtype), s[1].data,
                            float_type(s[1].dtype), cols_of(s[0]), d.data, float_type(d.dtype))) {
        e = row_norm_vec(static_cast<float*>(s[0].data), s[2].data, float_type(s[2].dtype),
                         static_cast<const float*>(s[1].data), rows_of(s[0]), cols_of(s[0]), static_cast<float>(op.f[0]),
                         d.data, float_type(d.dtype), stream);
        break;
      }
      e = add_rms_norm(s[0].data, float_type(s[0].dtype), s[2].data, float_type(s[2].dtype), s[1].data,
                       float_type(s[1].dtype), rows_of(s[0]), cols_of(s[0]), static_cast<float>(op.f[0]), d.data,
                       float_type(d.dtype), stream);
      break;
    case XQ_OP_ARGMAX:
      if (argmax_vec_fits(s[0].data, float_type(s[0].dtype), cols_of(s[0]))) {  // 16-byte kernel (argmax_vec.hpp)
        e = argmax_vec(static_cast<const float*>(s[0].data), rows_of(s[0]), cols_of(s[0]), static_cast<int32_t*>(d.data),
                       stream);
        break;
      }
      e = argmax_rows(s[0].data, float_type(s[0].dtype), rows_of(s[0]), cols_of(s[0]), static_cast<int32_t*>(d.data),
                      stream);
      break;
    default: break;
  }
  if (e != cudaSuccess)
    throw Error(XQ_ERR_DEVICE, format("cuda: %s launch failed: %s", op_name(op.type), cudaGetErrorString(e)));
}

}  // namespace xqcuda
