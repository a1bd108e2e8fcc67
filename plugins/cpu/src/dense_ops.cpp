// dense_ops.cpp: the float ops of the `cpu` provider (matmul through
// OpenBLAS, norms, RoPE, attention, elementwise, gathers, conversions) and
// the validation every op goes through before it runs.
#include "cpu.hpp"
#include "decode_attention.hpp"
#include "gguf_blocks_weight.hpp"
#include "int8_rounding.hpp"
#include "vector_exp.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/op_name.hpp>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace xquant::cpu {

using sdk::format;

bool present(const xq_device_tensor& t) { return t.data != nullptr; }

namespace {

[[noreturn]] void reject(const xq_op& op, const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: %s: %s", sdk::op_name(op.type), why.c_str()));
}

void need(const xq_op& op, bool cond, const char* why) {
  if (!cond) reject(op, why);
}

// A present, contiguous tensor of dtype `dt` with 1..4 dims and no negative extent.
void need_tensor(const xq_op& op, const xq_device_tensor& t, xq_dtype dt, const char* what) {
  if (!present(t)) reject(op, format("%s is missing", what));
  if (t.ndim < 1 || t.ndim > 4) reject(op, format("%s has %u dims (1..4 supported)", what, t.ndim));
  for (uint32_t d = 0; d < t.ndim; ++d)
    if (t.shape[d] < 0) reject(op, format("%s has a negative extent", what));
  if (!is_contiguous(t)) reject(op, format("%s is strided (only contiguous tensors)", what));
  if (t.dtype != dt) reject(op, format("%s has dtype %d (expected %d)", what, static_cast<int>(t.dtype), static_cast<int>(dt)));
}

bool is_float_storage(xq_dtype t) { return t == XQ_DTYPE_F32 || t == XQ_DTYPE_F16 || t == XQ_DTYPE_BF16; }

inline float load_as_f32(xq_dtype t, const void* base, int64_t i) {
  switch (t) {
    case XQ_DTYPE_F16: return sdk::f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case XQ_DTYPE_BF16: return sdk::bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

inline void store_f32(xq_dtype t, void* base, int64_t i, float v) {
  switch (t) {
    case XQ_DTYPE_F16: static_cast<uint16_t*>(base)[i] = sdk::f32_to_f16(v); break;
    case XQ_DTYPE_BF16: static_cast<uint16_t*>(base)[i] = sdk::f32_to_bf16(v); break;
    default: static_cast<float*>(base)[i] = v; break;
  }
}

}  // namespace

float dot_f32(const float* w, const float* x, int64_t k) {
  // Four independent 4-wide accumulators (GCC/Clang vector extensions): the
  // loop streams W at memory speed without -ffast-math reassociation.
  typedef float v4f __attribute__((vector_size(16)));
  v4f a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    v4f w0, w1, w2, w3, x0, x1, x2, x3;
    std::memcpy(&w0, w + i, 16);
    std::memcpy(&w1, w + i + 4, 16);
    std::memcpy(&w2, w + i + 8, 16);
    std::memcpy(&w3, w + i + 12, 16);
    std::memcpy(&x0, x + i, 16);
    std::memcpy(&x1, x + i + 4, 16);
    std::memcpy(&x2, x + i + 8, 16);
    std::memcpy(&x3, x + i + 12, 16);
    a0 += w0 * x0;
    a1 += w1 * x1;
    a2 += w2 * x2;
    a3 += w3 * x3;
  }
  v4f s = (a0 + a1) + (a2 + a3);
  float sum = (s[0] + s[1]) + (s[2] + s[3]);
  for (; i < k; ++i) sum += w[i] * x[i];
  return sum;
}

void check_dense(const xq_op& op) {
  const auto& d = op.dst;
  const auto* s = op.src;
  switch (op.type) {
    case XQ_OP_MATMUL: {
      need_tensor(op, s[0], XQ_DTYPE_F32, "src[0] (x)");
      need(op, present(s[1]) && (s[1].dtype == XQ_DTYPE_F32 || s[1].dtype == XQ_DTYPE_BF16 || s[1].dtype == XQ_DTYPE_F16),
           "src[1] (W) must be F32, BF16 or F16");
      need_tensor(op, s[1], s[1].dtype, "src[1] (W)");
      need_tensor(op, d, XQ_DTYPE_F32, "dst");
      need(op, s[1].ndim == 2, "W must be 2-D [N, K]");
      int64_t m = rows_of(s[0]), k = cols_of(s[0]), n = s[1].shape[0];
      need(op, s[1].shape[1] == k, "x and W disagree on K");
      need(op, rows_of(d) == m && cols_of(d) == n, "dst must be [M, N]");
      if (present(s[2])) {
        need_tensor(op, s[2], XQ_DTYPE_F32, "src[2] (bias)");
        need(op, numel(s[2]) == n, "bias must have N elements");
      }
      return;
    }
    case XQ_OP_RMS_NORM: {
      need_tensor(op, s[0], XQ_DTYPE_F32, "src[0]");
      need_tensor(op, s[1], XQ_DTYPE_F32, "src[1] (weight)");
      need_tensor(op, d, XQ_DTYPE_F32, "dst");
      need(op, numel(s[1]) == cols_of(s[0]), "weight must have D elements");
      need(op, numel(d) == numel(s[0]) && cols_of(d) == cols_of(s[0]), "dst must match src[0]");
      need(op, op.f[0] >= 0.0, "eps must be >= 0");
      return;
    }
    case XQ_OP_ROPE: {
      need_tensor(op, d, XQ_DTYPE_F32, "dst");
      need(op, !present(s[0]) || s[0].data == d.data, "ROPE is in place: src[0] must be dst");
      need(op, d.ndim == 3, "dst must be [T, H, D]");
      need_tensor(op, s[1], XQ_DTYPE_I32, "src[1] (positions)");
      need(op, numel(s[1]) == d.shape[0], "positions must have T elements");
      need(op, op.i[0] == 0 || op.i[0] == 1, "pairing i[0] must be 0 (neox) or 1 (norm)");
      int64_t rot = op.i[1];
      need(op, rot > 0 && rot <= d.shape[2] && rot % 2 == 0, "rotary dims i[1] must be even and in (0, D]");
      need(op, op.f[0] > 0.0, "theta base f[0] must be > 0");
      if (present(s[2])) {
        need_tensor(op, s[2], XQ_DTYPE_F32, "src[2] (freq factors)");
        need(op, numel(s[2]) == rot / 2, "freq factors must have rot/2 elements");
      }
      return;
    }
    case XQ_OP_ATTENTION: {
      need_tensor(op, s[0], XQ_DTYPE_F32, "src[0] (q)");
      need_tensor(op, s[1], XQ_DTYPE_F32, "src[1] (k)");
      need_tensor(op, s[2], XQ_DTYPE_F32, "src[2] (v)");
      need_tensor(op, d, XQ_DTYPE_F32, "dst");
      need(op, s[0].ndim == 3 && s[1].ndim == 3 && s[2].ndim == 3 && d.ndim == 3, "q, k, v, dst must be 3-D");
      int64_t t = s[0].shape[0], h = s[0].shape[1], hd = s[0].shape[2];
      int64_t kvh = s[1].shape[1];
      need(op, kvh > 0 && h % kvh == 0, "heads must be a multiple of kv heads");
      need(op, s[1].shape[2] == hd && s[2].shape[2] == hd, "head dims differ");
      need(op, s[2].shape[0] == s[1].shape[0] && s[2].shape[1] == kvh, "k and v shapes differ");
      need(op, d.shape[0] == t && d.shape[1] == h && d.shape[2] == hd, "dst must be [T, H, D]");
      need(op, op.i[0] >= 0, "start position i[0] must be >= 0");
      need(op, op.i[0] + t <= s[1].shape[0], "keys must cover positions 0 .. i[0]+T-1");
      return;
    }
    case XQ_OP_SWIGLU:
    case XQ_OP_ADD:
    case XQ_OP_MUL: {
      need_tensor(op, s[0], XQ_DTYPE_F32, "src[0]");
      need_tensor(op, s[1], XQ_DTYPE_F32, "src[1]");
      need_tensor(op, d, XQ_DTYPE_F32, "dst");
      need(op, numel(d) == numel(s[0]), "dst must have src[0]'s size");
      bool same = numel(s[1]) == numel(s[0]);
      bool bcast = op.type != XQ_OP_SWIGLU && numel(s[1]) == cols_of(s[0]);
      need(op, same || bcast, "src[1] must match src[0] (or be [N] broadcast on rows for ADD/MUL)");
      return;
    }
    case XQ_OP_GET_ROWS: {
      need(op, present(s[0]) && is_float_storage(s[0].dtype), "src[0] must be an F32/F16/BF16 table");
      need_tensor(op, s[0], s[0].dtype, "src[0] (table)");
      need(op, s[0].ndim == 2, "table must be [V, D]");
      need_tensor(op, s[1], XQ_DTYPE_I32, "src[1] (ids)");
      need_tensor(op, d, XQ_DTYPE_F32, "dst");
      need(op, rows_of(d) == numel(s[1]) && cols_of(d) == s[0].shape[1], "dst must be [T, D]");
      return;
    }
    case XQ_OP_QUANTIZE_ACT: {
      need_tensor(op, s[0], XQ_DTYPE_F32, "src[0]");
      need_tensor(op, d, XQ_DTYPE_I8, "dst");
      need_tensor(op, s[1], XQ_DTYPE_F32, "src[1] (scales out)");
      need(op, numel(d) == numel(s[0]) && cols_of(d) == cols_of(s[0]), "dst must match src[0]");
      need(op, numel(s[1]) == rows_of(s[0]), "scales must have M elements");
      need(op, op.i[0] == 0 || op.i[0] == 1, "i[0] must be 0 (per token) or 1 (static)");
      if (op.i[0] == 1) need(op, op.f[0] > 0.0, "static scale f[0] must be > 0");
      return;
    }
    case XQ_OP_CONVERT: {
      need(op, present(s[0]) && is_float_storage(s[0].dtype), "src[0] must be F32/F16/BF16");
      need(op, present(d) && is_float_storage(d.dtype), "dst must be F32/F16/BF16");
      need_tensor(op, s[0], s[0].dtype, "src[0]");
      need_tensor(op, d, d.dtype, "dst");
      need(op, numel(d) == numel(s[0]), "dst and src[0] sizes differ");
      return;
    }
    default:
      reject(op, "not a dense op");
  }
}

void check_op(const xq_op& op) {
  if (op.struct_size < sizeof(xq_op)) throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: xq_op struct_size too small");
  if (op.type == XQ_OP_QMATMUL || op.type == XQ_OP_DEQUANTIZE)
    check_quant(op);
  else if (is_paged_op(op.type))
    check_paged(op);
  else if (is_moe_op(op.type))
    check_moe_op(op);
  else if (op.type == XQ_OP_GET_ROWS && op.qweight)
    check_blocks_get_rows(op);
  else if (op.type == XQ_OP_ROPE_KV)
    check_rope_kv(op);
  else
    check_dense(op);
}

void sgemm_nt_blocked(const Host& host, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                      const float* b, int64_t ldb, float* c, int64_t ldc) {
  // Blocks of kSgemmBlockCols output columns, a fixed shape whatever the
  // thread count; each is one single-threaded OpenBLAS call on a pool thread.
  constexpr int64_t kSgemmBlockCols = 128;
  const uint64_t blocks = static_cast<uint64_t>((n + kSgemmBlockCols - 1) / kSgemmBlockCols);
  host.parallel_for(blocks, 1, [&](uint64_t b0, uint64_t b1) {
    for (uint64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = static_cast<int64_t>(blk) * kSgemmBlockCols, nj = std::min(kSgemmBlockCols, n - j0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(nj),
                  static_cast<int>(k), alpha, a, static_cast<int>(lda), b + j0 * ldb, static_cast<int>(ldb), 0.0f,
                  c + j0, static_cast<int>(ldc));
    }
  });
}

void run_matmul(const Host& host, const xq_op& op) {
  if (op.src[1].dtype == XQ_DTYPE_BF16 || op.src[1].dtype == XQ_DTYPE_F16) return run_matmul_bf16_weights(host, op);
  const auto& x = op.src[0];
  const auto& w = op.src[1];
  int64_t m = rows_of(x), k = cols_of(x), n = w.shape[0];
  const float* a = static_cast<const float*>(x.data);
  const float* b = static_cast<const float*>(w.data);
  float* c = static_cast<float*>(op.dst.data);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(c, c + m * n, 0.0f);
  } else if (m == 1) {
    // One token (decode): memory-bound GEMV, rows split over our pool so
    // every thread streams its share of W whatever the matrix size
    // (OpenBLAS runs small GEMVs on one thread).
    // At least ~256 KiB of W per task: waking a pool thread costs more than
    // streaming less.
    const uint64_t grain = std::max<uint64_t>(32, static_cast<uint64_t>((int64_t{1} << 16) / std::max<int64_t>(k, 1)));
    host.parallel_for(static_cast<uint64_t>(n), grain, [&](uint64_t r0, uint64_t r1) {
      for (uint64_t r = r0; r < r1; ++r) c[r] = dot_f32(b + r * k, a, k);
    });
  } else {
    sgemm_nt_blocked(host, m, n, k, 1.0f, a, k, b, k, c, n);
  }
  if (present(op.src[2])) {
    const float* bias = static_cast<const float*>(op.src[2].data);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += bias[j];
  }
}

void run_rms_norm(const Host& host, const xq_op& op) {
  int64_t m = rows_of(op.src[0]), d = cols_of(op.src[0]);
  const float* x = static_cast<const float*>(op.src[0].data);
  const float* w = static_cast<const float*>(op.src[1].data);
  float* y = static_cast<float*>(op.dst.data);
  float eps = static_cast<float>(op.f[0]);
  host.parallel_for(static_cast<uint64_t>(m), 16, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) {
      const float* xr = x + r * d;
      float* yr = y + r * d;
      double ss = 0.0;
      for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(d)) + eps);
      for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * inv * w[i];
    }
  });
}

void run_rope(const Host& host, const xq_op& op) {
  const auto& t = op.dst;
  int64_t T = t.shape[0], H = t.shape[1], D = t.shape[2];
  int64_t rot = op.i[1], half = rot / 2;
  bool neox = op.i[0] == 0;
  float base = static_cast<float>(op.f[0]);
  float pos_scale = op.f[1] == 0.0 ? 1.0f : static_cast<float>(op.f[1]);
  const int32_t* pos = static_cast<const int32_t*>(op.src[1].data);
  const float* factors = present(op.src[2]) ? static_cast<const float*>(op.src[2].data) : nullptr;
  float* data = static_cast<float*>(t.data);
  // inv_freq as HF computes it in float32: 1 / base^(2i/rot).
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(rot));
    if (factors) inv[i] /= factors[i];
  }
  host.parallel_for(static_cast<uint64_t>(T), 1, [&](uint64_t b, uint64_t e) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (uint64_t ti = b; ti < e; ++ti) {
      float p = static_cast<float>(pos[ti]) * pos_scale;
      for (int64_t i = 0; i < half; ++i) {
        float ang = p * inv[i];
        cs[i] = std::cos(ang);
        sn[i] = std::sin(ang);
      }
      for (int64_t h = 0; h < H; ++h) {
        float* v = data + (ti * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          int64_t a = neox ? i : 2 * i;
          int64_t c = neox ? i + half : 2 * i + 1;
          float x0 = v[a], x1 = v[c];
          v[a] = x0 * cs[i] - x1 * sn[i];
          v[c] = x0 * sn[i] + x1 * cs[i];
        }
      }
    }
  });
}

namespace {

// Causal softmax of one score row in place: keys 0..last are visible. Max
// and exponentials vectorized (vector_exp.hpp): scalar, they were most of a
// small model's prefill.
inline void softmax_causal(float* p, int64_t n_keys, int64_t last) {
  const float mx = row_max(p, last + 1);
  const float sum = exp_shifted_sum(p, p, last + 1, mx);
  float inv = 1.0f / sum;
  for (int64_t s = 0; s <= last; ++s) p[s] *= inv;
  for (int64_t s = last + 1; s < n_keys; ++s) p[s] = 0.0f;
}

}  // namespace

void run_attention(const Host& host, const xq_op& op) {
  const auto& q = op.src[0];
  const auto& k = op.src[1];
  int64_t T = q.shape[0], H = q.shape[1], D = q.shape[2];
  int64_t KVH = k.shape[1];
  int64_t group = H / KVH;
  int64_t start = op.i[0];
  float scale = static_cast<float>(op.f[0]);
  const float* qd = static_cast<const float*>(q.data);
  const float* kd = static_cast<const float*>(k.data);
  const float* vd = static_cast<const float*>(op.src[2].data);
  float* out = static_cast<float*>(op.dst.data);
  const int64_t n_keys = start + T;  // keys the last query sees

  if (T >= 16) {
    // Prefill: one head per task: scores = Q_h K_kh^T, the causal softmax,
    // out_h = P V_kh, as single-threaded SGEMMs over strided head views.
    // The masked upper triangle costs 2x FLOPs at GEMM speed, far cheaper
    // than scalar dot products; each head's arithmetic is the same whatever
    // the thread count.
    host.parallel_for(static_cast<uint64_t>(H), 1, [&](uint64_t h0, uint64_t h1) {
      std::vector<float> p(static_cast<size_t>(T * n_keys));
      for (int64_t h = static_cast<int64_t>(h0); h < static_cast<int64_t>(h1); ++h) {
        int64_t kh = h / group;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(n_keys),
                    static_cast<int>(D), scale, qd + h * D, static_cast<int>(H * D), kd + kh * D,
                    static_cast<int>(KVH * D), 0.0f, p.data(), static_cast<int>(n_keys));
        for (int64_t t = 0; t < T; ++t) softmax_causal(p.data() + t * n_keys, n_keys, start + t);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(T), static_cast<int>(D),
                    static_cast<int>(n_keys), 1.0f, p.data(), static_cast<int>(n_keys), vd + kh * D,
                    static_cast<int>(KVH * D), 0.0f, out + h * D, static_cast<int>(H * D));
      }
    });
    return;
  }

  // Decode / short chunks: one (query, KV head) pair per task, the KV head's
  // query heads together (decode_attention.hpp); short contexts run inline
  // (a thread wake-up costs more than the work).
  const uint64_t pairs = static_cast<uint64_t>(T * KVH);
  const uint64_t grain = n_keys * D * H < (int64_t{1} << 17) ? pairs : 1;
  host.parallel_for(pairs, grain, [&](uint64_t b, uint64_t e) {
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(group * n_keys));
    for (uint64_t tk = b; tk < e; ++tk) {
      const int64_t t = static_cast<int64_t>(tk) / KVH, kh = static_cast<int64_t>(tk) % KVH;
      const int64_t row = (t * H + kh * group) * D;  // the group's query heads are adjacent
      const KeyRun keys{kd + kh * D, vd + kh * D, start + t + 1};  // causal: keys 0 .. start + t
      decode_attention_group(qd + row, group, D, scale, &keys, 1, KVH * D, scratch.data(), out + row);
    }
  });
}

void run_swiglu(const Host& host, const xq_op& op) {
  int64_t n = numel(op.dst);
  const float* a = static_cast<const float*>(op.src[0].data);
  const float* g = static_cast<const float*>(op.src[1].data);
  float* y = static_cast<float*>(op.dst.data);
  host.parallel_for(static_cast<uint64_t>(n), 4096, [&](uint64_t b, uint64_t e) {
    silu_mul(a + b, g + b, y + b, static_cast<int64_t>(e - b));  // vectorized exp (vector_exp.hpp)
  });
}

void run_add_mul(const Host& host, const xq_op& op, bool mul) {
  int64_t n = numel(op.dst);
  int64_t n1 = numel(op.src[1]);
  const float* a = static_cast<const float*>(op.src[0].data);
  const float* b1 = static_cast<const float*>(op.src[1].data);
  float* y = static_cast<float*>(op.dst.data);
  host.parallel_for(static_cast<uint64_t>(n), 4096, [&](uint64_t b, uint64_t e) {
    for (uint64_t i = b; i < e; ++i) {
      float v = b1[n1 == n ? i : i % static_cast<uint64_t>(n1)];
      y[i] = mul ? a[i] * v : a[i] + v;
    }
  });
}

void run_get_rows(const Host& host, const xq_op& op) {
  (void)host;
  const auto& table = op.src[0];
  int64_t V = table.shape[0], D = table.shape[1];
  const int32_t* ids = static_cast<const int32_t*>(op.src[1].data);
  int64_t T = numel(op.src[1]);
  float* y = static_cast<float*>(op.dst.data);
  for (int64_t t = 0; t < T; ++t)
    if (ids[t] < 0 || ids[t] >= V)
      throw Error(XQ_ERR_INVALID_ARGUMENT,
                  format("cpu provider: GET_ROWS: id %d at position %lld is outside [0, %lld)", ids[t],
                         static_cast<long long>(t), static_cast<long long>(V)));
  for (int64_t t = 0; t < T; ++t) {
    if (table.dtype == XQ_DTYPE_F32) {
      std::memcpy(y + t * D, static_cast<const float*>(table.data) + static_cast<int64_t>(ids[t]) * D, D * sizeof(float));
    } else {
      for (int64_t i = 0; i < D; ++i) y[t * D + i] = load_as_f32(table.dtype, table.data, ids[t] * D + i);
    }
  }
}

float quantize_row_i8(const float* x, int64_t k, int8_t* q, float static_scale) {
  float s = static_scale;
  float lo = -127.0f;
  if (s <= 0.0f) {
    const float amax = abs_max(x, k);
    s = amax > 0.0f ? amax / 127.0f : 1.0f;
  } else {
    lo = -128.0f;  // a static scale may clip on either side: use the full range
  }
  // Clamped, then rounded: the same codes as rounding, then clamping, since
  // both bounds are integers.
  scale_round_i8(x, k, 1.0f / s, lo, 127.0f, q);
  return s;
}

void run_quantize_act(const Host& host, const xq_op& op) {
  int64_t m = rows_of(op.src[0]), k = cols_of(op.src[0]);
  const float* x = static_cast<const float*>(op.src[0].data);
  int8_t* q = static_cast<int8_t*>(op.dst.data);
  float* sc = static_cast<float*>(op.src[1].data);
  float st = op.i[0] == 1 ? static_cast<float>(op.f[0]) : 0.0f;
  host.parallel_for(static_cast<uint64_t>(m), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) sc[r] = quantize_row_i8(x + r * k, k, q + r * k, st);
  });
}

void run_convert(const Host& host, const xq_op& op) {
  int64_t n = numel(op.dst);
  xq_dtype st = op.src[0].dtype, dt = op.dst.dtype;
  const void* s = op.src[0].data;
  void* d = op.dst.data;
  host.parallel_for(static_cast<uint64_t>(n), 8192, [&](uint64_t b, uint64_t e) {
    for (uint64_t i = b; i < e; ++i) store_f32(dt, d, static_cast<int64_t>(i), load_as_f32(st, s, static_cast<int64_t>(i)));
  });
}

}  // namespace xquant::cpu
