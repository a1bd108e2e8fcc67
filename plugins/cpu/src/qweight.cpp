// qweight.cpp: the `cpu` provider's quantized weights: packing a canonical
// quantized tensor into the layout its kernels stream (qkernels.hpp: INT4 two
// codes per byte, INT8 one, every group padded to whole 32-column blocks),
// DEQUANTIZE, and QMATMUL:
//   - weight-only decode (M <= 4, XQUANT_CPU_GEMV_ROWS): a fused GEMV per output row, either float
//     FMAs on unpacked codes (exact up to float rounding; the default) or,
//     with XQUANT_CPU_GEMV=q8, the activation row quantized once per call to
//     int8 with one scale per 32-column block and integer dot products (as
//     llama.cpp's Q4_0 x Q8_0 path);
//   - weight-only prefill: dequantize a tile of rows + OpenBLAS SGEMM;
//   - W8A8 (any M): activations quantized per token (or with the static
//     scale) to int8 and exact int32 dot products per group, so measured
//     quality reflects real W8A8 numerics.
// Kernels come from the table chosen at prepare time (qkernels_dispatch.cpp).
//
// Act-order (g_idx) is handled once at prepare time: columns are permuted so
// each group is a contiguous range, and the activation row is gathered into
// the same (permuted, padded) order at run time. Every kernel then loops
// over whole blocks of contiguous groups, with no tail.
#include "cpu.hpp"
#include "gguf_blocks_weight.hpp"
#include "qkernels.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>

namespace xquant::cpu {

using sdk::format;

namespace {

[[noreturn]] void bad(const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, "cpu provider: quantized weight: " + why);
}

const uint8_t* row_codes(const xq_qweight& w, int64_t r) { return w.codes.data() + r * w.row_bytes; }

// Byte and nibble of padded column p in an INT4 row (layout in qkernels.hpp).
inline int64_t int4_byte(int64_t p) { return (p / kBlock) * 16 + (p % 16); }
inline bool int4_high(int64_t p) { return p % kBlock >= 16; }

// The signed code at padded column p of a packed row.
inline int code_at(const xq_qweight& w, const uint8_t* row, int64_t p) {
  if (!w.int4) return static_cast<int8_t>(row[p]);
  uint8_t b = row[int4_byte(p)];
  return (int4_high(p) ? b >> 4 : b & 0x0F) - 8;
}

// Dequantizes row r into out[padded_cols] (padded, permuted column order;
// padding columns get a finite value that always meets a zero activation).
void dequant_row_padded(const xq_qweight& w, int64_t r, float* out) {
  const uint8_t* c = row_codes(w, r);
  const float* s = w.scales.data() + r * w.n_groups;
  const float* z = w.zeros.empty() ? nullptr : w.zeros.data() + r * w.n_groups;
  for (int64_t g = 0; g < w.n_groups; ++g) {
    const float sg = s[g], zg = z ? z[g] : 0.0f;
    for (int64_t p = w.block_begin[g] * kBlock; p < w.block_begin[g + 1] * kBlock; ++p)
      out[p] = (static_cast<float>(code_at(w, c, p)) - zg) * sg;
  }
}

// Per-calling-thread buffers of run_qmatmul, grown on demand and reused, so a
// decode step allocates nothing once the largest shape has been seen.
struct Scratch {
  std::vector<float> x, xsum, sa, tile;
  std::vector<int8_t> qa;
  std::vector<int32_t> qsum;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}
template <class T>
T* sized(std::vector<T>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
  return v.data();
}

// x [M, cols] in the weight's column order, padded with zeros: x itself when
// that is already the case (no act-order, every group a whole number of blocks).
const float* gather_padded(const xq_qweight& w, const float* x, int64_t M, std::vector<float>& buf) {
  if (w.perm.empty() && w.padded_cols == w.cols) return x;
  float* xp = sized(buf, M * w.padded_cols);
  std::fill(xp, xp + M * w.padded_cols, 0.0f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < w.n_groups; ++g) {
      float* dst = xp + m * w.padded_cols + w.block_begin[g] * kBlock - w.group_begin[g];
      for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j)
        dst[j] = x[m * w.cols + (w.perm.empty() ? j : w.perm[j])];
    }
  return xp;
}

// Quantizes a padded activation row to int8 with one scale per 32-column
// block (llama.cpp's quantize_row_q8_0: s = max|x| / 127, q = round(x / s)).
void quantize_row_q8_blocks(const float* x, int64_t nblk, int8_t* q, float* sa) {
  for (int64_t b = 0; b < nblk; ++b) {
    const float* xb = x + b * kBlock;
    float amax = 0.0f;
    for (int i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    sa[b] = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < kBlock; ++i) q[b * kBlock + i] = static_cast<int8_t>(std::nearbyint(xb[i] * inv));
  }
}

// What a group's code offset is: the kernels see unsigned nibbles (code + 8)
// for INT4 and signed codes for INT8; the zero point adds to that.
inline float group_offset(const xq_qweight& w, const float* z, int64_t g) {
  return (w.int4 ? 8.0f : 0.0f) + (z ? z[g] : 0.0f);
}

}  // namespace

xq_qweight* prepare_qweight(const xq_quant_tensor& q) {
  if (q.struct_size < sizeof(xq_quant_tensor)) bad("struct_size too small");
  if (sdk::is_float_code(q.bits)) return prepare_fp8_qweight(q);
  if (q.bits < 2 || q.bits > 8) bad(format("bits %u outside 2..8", q.bits));
  if (q.rows <= 0 || q.cols <= 0) bad("rows and cols must be positive");
  if (!q.codes || !q.scales) bad("codes or scales missing");
  int64_t n_groups = 1, group_size = q.cols;
  switch (q.strategy) {
    case XQ_STRATEGY_TENSOR:
    case XQ_STRATEGY_CHANNEL: break;
    case XQ_STRATEGY_GROUP:
      if (q.group_size <= 0) bad("group_size must be positive");
      group_size = q.group_size;
      n_groups = (q.cols + group_size - 1) / group_size;
      if (q.n_groups != n_groups)
        bad(format("n_groups %lld != ceil(cols/group_size) %lld", static_cast<long long>(q.n_groups),
                   static_cast<long long>(n_groups)));
      break;
    default: bad("strategy BLOCK (or unknown) is not supported");
  }
  if (q.g_idx && q.strategy != XQ_STRATEGY_GROUP) bad("g_idx needs GROUP strategy");
  if (q.act_scheme != XQ_ACT_NONE) {
    if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN && q.act_scheme != XQ_ACT_STATIC_TENSOR) bad("unknown act_scheme");
    if (q.act_bits != 8) bad(format("act_bits %u (only 8-bit activations)", q.act_bits));
    if (q.act_scheme == XQ_ACT_STATIC_TENSOR && !(q.input_scale > 0.0f)) bad("static activation scale must be > 0");
  }
  auto w = std::make_unique<xq_qweight>();
  w->rows = q.rows;
  w->cols = q.cols;
  w->n_groups = n_groups;
  w->bits = q.bits;
  w->int4 = q.bits <= 4;
  w->act_scheme = q.act_scheme;
  w->input_scale = q.input_scale;
  w->kernels = &kernels_of(selected_isa());
  w->gemv_q8 = selected_gemv_mode() == GemvMode::q8;
  w->gemv_max_rows = selected_gemv_max_rows();
  const int lo = -(1 << (q.bits - 1)), hi = (1 << (q.bits - 1)) - 1;

  // Column order and group ranges.
  w->group_begin.assign(static_cast<size_t>(n_groups + 1), 0);
  if (q.g_idx) {
    std::vector<int64_t> count(static_cast<size_t>(n_groups), 0);
    for (int64_t c = 0; c < q.cols; ++c) {
      if (q.g_idx[c] < 0 || q.g_idx[c] >= n_groups)
        bad(format("g_idx[%lld] = %d outside [0, %lld)", static_cast<long long>(c), q.g_idx[c], static_cast<long long>(n_groups)));
      ++count[q.g_idx[c]];
    }
    for (int64_t g = 0; g < n_groups; ++g) w->group_begin[g + 1] = w->group_begin[g] + count[g];
    w->perm.resize(static_cast<size_t>(q.cols));
    std::iota(w->perm.begin(), w->perm.end(), 0);
    std::stable_sort(w->perm.begin(), w->perm.end(), [&](int32_t a, int32_t b) { return q.g_idx[a] < q.g_idx[b]; });
  } else {
    for (int64_t g = 0; g <= n_groups; ++g) w->group_begin[g] = std::min(q.cols, g * group_size);
  }
  // Each group padded to whole blocks.
  w->block_begin.assign(static_cast<size_t>(n_groups + 1), 0);
  for (int64_t g = 0; g < n_groups; ++g)
    w->block_begin[g + 1] = w->block_begin[g] + (w->group_begin[g + 1] - w->group_begin[g] + kBlock - 1) / kBlock;
  w->padded_cols = w->block_begin[n_groups] * kBlock;
  w->row_bytes = w->int4 ? w->padded_cols / 2 : w->padded_cols;

  // Codes (permuted, padded, packed), range-checked so a corrupt tensor is
  // reported, not run. Padding holds code 0.
  w->codes.assign(static_cast<size_t>(q.rows * w->row_bytes), w->int4 ? 0x88 : 0);
  for (int64_t r = 0; r < q.rows; ++r) {
    const int8_t* src = q.codes + r * q.cols;
    uint8_t* dst = w->codes.data() + r * w->row_bytes;
    for (int64_t g = 0; g < n_groups; ++g) {
      const int64_t p0 = w->block_begin[g] * kBlock - w->group_begin[g];
      for (int64_t j = w->group_begin[g]; j < w->group_begin[g + 1]; ++j) {
        int8_t v = src[w->perm.empty() ? j : w->perm[j]];
        if (v < lo || v > hi)
          bad(format("code %d at row %lld outside the %u-bit range [%d, %d]", v, static_cast<long long>(r), q.bits, lo, hi));
        const int64_t p = p0 + j;
        if (!w->int4) {
          dst[p] = static_cast<uint8_t>(v);
        } else {
          uint8_t& b = dst[int4_byte(p)];
          const uint8_t u = static_cast<uint8_t>(v + 8);
          b = int4_high(p) ? static_cast<uint8_t>((b & 0x0F) | (u << 4)) : static_cast<uint8_t>((b & 0xF0) | u);
        }
      }
    }
  }
  // Scales and zero points, expanded to [rows * n_groups].
  size_t ns = static_cast<size_t>(q.rows * n_groups);
  w->scales.resize(ns);
  if (q.zero_points) w->zeros.resize(ns);
  for (size_t i = 0; i < ns; ++i) {
    size_t src = q.strategy == XQ_STRATEGY_TENSOR ? 0 : i;
    w->scales[i] = q.scales[src];
    if (!std::isfinite(w->scales[i])) bad(format("scale #%zu is not finite", src));
    if (q.zero_points) w->zeros[i] = static_cast<float>(q.zero_points[src]);
  }
  return w.release();
}

void check_quant(const xq_op& op) {
  auto need = [&](bool c, const char* why) {
    if (!c) throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: %s: %s", op.type == XQ_OP_QMATMUL ? "QMATMUL" : "DEQUANTIZE", why));
  };
  const xq_qweight* w = op.qweight;
  need(w != nullptr, "qweight missing");
  const auto& d = op.dst;
  need(present(d) && is_contiguous(d) && d.ndim >= 1 && d.ndim <= 4, "dst must be a present contiguous tensor");
  if (op.type == XQ_OP_DEQUANTIZE) {
    need(d.dtype == XQ_DTYPE_F32 || d.dtype == XQ_DTYPE_F16 || d.dtype == XQ_DTYPE_BF16, "dst must be F32/F16/BF16");
    need(rows_of(d) == w->rows && cols_of(d) == w->cols, "dst must be [N, K] of the weight");
    return;
  }
  const auto& x = op.src[0];
  need(present(x) && is_contiguous(x) && x.ndim >= 1 && x.ndim <= 4 && x.dtype == XQ_DTYPE_F32, "src[0] must be contiguous F32");
  need(cols_of(x) == w->cols, "src[0] K differs from the weight's cols");
  need(d.dtype == XQ_DTYPE_F32 && rows_of(d) == rows_of(x) && cols_of(d) == w->rows, "dst must be F32 [M, N]");
  if (present(op.src[2]))
    need(op.src[2].dtype == XQ_DTYPE_F32 && is_contiguous(op.src[2]) && numel(op.src[2]) == w->rows, "bias must be F32 [N]");
}

void run_dequantize(const Host& host, const xq_op& op) {
  if (op.qweight->blocks) return run_blocks_dequantize(host, op);
  const xq_qweight& w = *op.qweight;
  if (w.fp8) return run_fp8_dequantize(host, op);
  xq_dtype dt = op.dst.dtype;
  void* out = op.dst.data;
  host.parallel_for(static_cast<uint64_t>(w.rows), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) {
      const uint8_t* c = row_codes(w, static_cast<int64_t>(r));
      const float* s = w.scales.data() + r * w.n_groups;
      const float* z = w.zeros.empty() ? nullptr : w.zeros.data() + r * w.n_groups;
      for (int64_t g = 0; g < w.n_groups; ++g) {
        const float sg = s[g], zg = z ? z[g] : 0.0f;
        const int64_t p0 = w.block_begin[g] * kBlock - w.group_begin[g];
        for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j) {
          // The same expression as the canonical (code - zp) * scale.
          const float v = (static_cast<float>(code_at(w, c, p0 + j)) - zg) * sg;
          const int64_t i = static_cast<int64_t>(r) * w.cols + (w.perm.empty() ? j : w.perm[j]);
          if (dt == XQ_DTYPE_F32) static_cast<float*>(out)[i] = v;
          else if (dt == XQ_DTYPE_F16) static_cast<uint16_t*>(out)[i] = sdk::f32_to_f16(v);
          else static_cast<uint16_t*>(out)[i] = sdk::f32_to_bf16(v);
        }
      }
    }
  });
}

namespace {

// W8A8: int8 activations (per token or static), exact int32 dot per group.
void qmatmul_w8a8(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = w.rows, Kp = w.padded_cols, G = w.n_groups;
  const QKernels& k = *w.kernels;
  Scratch& sc = scratch();
  int8_t* qx = sized(sc.qa, M * Kp);
  float* sx = sized(sc.sa, M);
  int32_t* qsum = sized(sc.qsum, M * G);
  const float st = w.act_scheme == XQ_ACT_STATIC_TENSOR ? w.input_scale : 0.0f;
  for (int64_t m = 0; m < M; ++m) {
    sx[m] = quantize_row_i8(x + m * Kp, Kp, qx + m * Kp, st);
    for (int64_t g = 0; g < G; ++g) {
      int32_t s = 0;
      for (int64_t p = w.block_begin[g] * kBlock; p < w.block_begin[g + 1] * kBlock; ++p) s += qx[m * Kp + p];
      qsum[m * G + g] = s;
    }
  }
  const int64_t* bb = w.block_begin.data();
  host.parallel_for(static_cast<uint64_t>(N), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t n = b; n < e; ++n) {
      const uint8_t* c = row_codes(w, static_cast<int64_t>(n));
      const float* s = w.scales.data() + n * G;
      const float* z = w.zeros.empty() ? nullptr : w.zeros.data() + n * G;
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* a = qx + m * Kp;
        float acc = w.int4 ? k.dot4_i8(c, a, bb, G, s) : k.dot8_i8(reinterpret_cast<const int8_t*>(c), a, bb, G, s);
        if (w.int4 || z)
          for (int64_t g = 0; g < G; ++g) acc -= s[g] * group_offset(w, z, g) * static_cast<float>(qsum[m * G + g]);
        y[m * N + n] = sx[m] * acc + (bias ? bias[n] : 0.0f);
      }
    }
  });
}

// Weight-only decode: one fused GEMV per output row over the packed codes.
void qgemv_weight_only(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = w.rows, Kp = w.padded_cols, G = w.n_groups, nblk = w.block_begin[G];
  const QKernels& k = *w.kernels;
  Scratch& sc = scratch();
  // Per group: sum of the activations the offset multiplies (float path), or
  // of their int8 images times the block scales (q8 path).
  float* xsum = sized(sc.xsum, M * G);
  int8_t* qx = w.gemv_q8 ? sized(sc.qa, M * Kp) : nullptr;
  float* sa = w.gemv_q8 ? sized(sc.sa, M * nblk) : nullptr;
  for (int64_t m = 0; m < M; ++m) {
    if (qx) quantize_row_q8_blocks(x + m * Kp, nblk, qx + m * Kp, sa + m * nblk);
    for (int64_t g = 0; g < G; ++g) {
      float s = 0.0f;
      for (int64_t b = w.block_begin[g]; b < w.block_begin[g + 1]; ++b)
        if (qx) {
          int32_t qs = 0;
          for (int i = 0; i < kBlock; ++i) qs += qx[m * Kp + b * kBlock + i];
          s += sa[m * nblk + b] * static_cast<float>(qs);
        } else {
          for (int i = 0; i < kBlock; ++i) s += x[m * Kp + b * kBlock + i];
        }
      xsum[m * G + g] = s;
    }
  }
  const int64_t* bb = w.block_begin.data();
  host.parallel_for(static_cast<uint64_t>(N), 16, [&](uint64_t b, uint64_t e) {
    for (uint64_t n = b; n < e; ++n) {
      const uint8_t* c = row_codes(w, static_cast<int64_t>(n));
      const int8_t* c8 = reinterpret_cast<const int8_t*>(c);
      const float* s = w.scales.data() + n * G;
      const float* z = w.zeros.empty() ? nullptr : w.zeros.data() + n * G;
      for (int64_t m = 0; m < M; ++m) {
        float acc;
        if (qx) {
          const int8_t* a = qx + m * Kp;
          const float* sb = sa + m * nblk;
          acc = w.int4 ? k.dot4_q8(c, a, sb, bb, G, s) : k.dot8_q8(c8, a, sb, bb, G, s);
        } else {
          const float* a = x + m * Kp;
          acc = w.int4 ? k.dot4_f32(c, a, bb, G, s) : k.dot8_f32(c8, a, bb, G, s);
        }
        if (w.int4 || z)
          for (int64_t g = 0; g < G; ++g) acc -= s[g] * group_offset(w, z, g) * xsum[m * G + g];
        y[m * N + n] = acc + (bias ? bias[n] : 0.0f);
      }
    }
  });
}

// Weight-only prefill: dequantize a tile of rows, then SGEMM it, both split
// over our pool (sgemm_nt_blocked: fixed blocks, single-threaded OpenBLAS).
void qgemm_weight_only(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = w.rows, Kp = w.padded_cols;
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t{4} << 20) / std::max<int64_t>(Kp, 1)));
  float* wt = sized(scratch().tile, tile * Kp);
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    int64_t nt = std::min(tile, N - n0);
    host.parallel_for(static_cast<uint64_t>(nt), 8, [&](uint64_t b, uint64_t e) {
      for (uint64_t r = b; r < e; ++r) dequant_row_padded(w, n0 + static_cast<int64_t>(r), wt + r * Kp);
    });
    sgemm_nt_blocked(host, M, nt, Kp, 1.0f, x, Kp, wt, Kp, y + n0, N);
  }
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}

}  // namespace

void run_qmatmul(const Host& host, const xq_op& op) {
  if (op.qweight->blocks) return run_blocks_qmatmul(host, op);
  const xq_qweight& w = *op.qweight;
  if (w.fp8) return run_fp8_qmatmul(host, op);
  const int64_t M = rows_of(op.src[0]);
  float* y = static_cast<float*>(op.dst.data);
  const float* bias = present(op.src[2]) ? static_cast<const float*>(op.src[2].data) : nullptr;
  if (M == 0) return;
  const float* x = gather_padded(w, static_cast<const float*>(op.src[0].data), M, scratch().x);
  if (w.act_scheme != XQ_ACT_NONE) qmatmul_w8a8(host, w, x, M, y, bias);
  else if (M <= w.gemv_max_rows) qgemv_weight_only(host, w, x, M, y, bias);
  else qgemm_weight_only(host, w, x, M, y, bias);
}

}  // namespace xquant::cpu
