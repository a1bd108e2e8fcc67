// qweight.cpp: the `cpu` provider's quantized weights: packing a canonical
// quantized tensor into the "cpu-int8-group" layout, DEQUANTIZE, and
// QMATMUL (weight-only: fused GEMV for a few rows, dequantize-a-tile + SGEMM
// for prefill; W8A8: activations quantized to int8 at run time and integer
// dot products, so measured quality reflects real W8A8 numerics).
//
// Act-order (g_idx) is handled once at prepare time: columns are permuted so
// each group is a contiguous range, and the activation row is permuted the
// same way at run time. Every kernel then loops over contiguous groups.
#include "cpu.hpp"

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

// Dequantizes row r of w into out[cols] (permuted column order).
inline void dequant_row(const xq_qweight& w, int64_t r, float* out) {
  const int8_t* c = w.codes.data() + r * w.cols;
  const float* s = w.scales.data() + r * w.n_groups;
  const float* z = w.zeros.empty() ? nullptr : w.zeros.data() + r * w.n_groups;
  for (int64_t g = 0; g < w.n_groups; ++g) {
    float sg = s[g], zg = z ? z[g] : 0.0f;
    for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j) out[j] = (static_cast<float>(c[j]) - zg) * sg;
  }
}

// sum_j c[j] * x[j] over int8 codes, with four 4-wide float accumulators
// (vector extensions) so the conversion and FMAs vectorize without fast-math.
inline float dot_i8_f32(const int8_t* c, const float* x, int64_t n) {
  typedef float v4f __attribute__((vector_size(16)));
  typedef int8_t v4c __attribute__((vector_size(4)));
  v4f a[4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int u = 0; u < 4; ++u) {
      v4c cc;
      v4f xx;
      std::memcpy(&cc, c + j + 4 * u, 4);
      std::memcpy(&xx, x + j + 4 * u, 16);
      a[u] += __builtin_convertvector(cc, v4f) * xx;
    }
  v4f s = (a[0] + a[1]) + (a[2] + a[3]);
  float sum = (s[0] + s[1]) + (s[2] + s[3]);
  for (; j < n; ++j) sum += static_cast<float>(c[j]) * x[j];
  return sum;
}

}  // namespace

xq_qweight* prepare_qweight(const xq_quant_tensor& q) {
  if (q.struct_size < sizeof(xq_quant_tensor)) bad("struct_size too small");
  if (q.bits < 2 || q.bits > 8) bad(format("bits %u outside 2..8", q.bits));
  if (q.rows <= 0 || q.cols <= 0) bad("rows and cols must be positive");
  if (!q.codes || !q.scales) bad("codes or scales missing");
  int64_t n_groups = 1, group_size = q.cols;
  switch (q.granularity) {
    case XQ_GRAN_TENSOR:
    case XQ_GRAN_CHANNEL: break;
    case XQ_GRAN_GROUP:
      if (q.group_size <= 0) bad("group_size must be positive");
      group_size = q.group_size;
      n_groups = (q.cols + group_size - 1) / group_size;
      if (q.n_groups != n_groups)
        bad(format("n_groups %lld != ceil(cols/group_size) %lld", static_cast<long long>(q.n_groups),
                   static_cast<long long>(n_groups)));
      break;
    default: bad("granularity BLOCK (or unknown) is not supported");
  }
  if (q.g_idx && q.granularity != XQ_GRAN_GROUP) bad("g_idx needs GROUP granularity");
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
  w->act_scheme = q.act_scheme;
  w->input_scale = q.input_scale;
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

  // Codes (permuted), range-checked so a corrupt tensor is reported, not run.
  w->codes.resize(static_cast<size_t>(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r) {
    const int8_t* src = q.codes + r * q.cols;
    int8_t* dst = w->codes.data() + r * q.cols;
    for (int64_t j = 0; j < q.cols; ++j) {
      int8_t v = src[w->perm.empty() ? j : w->perm[j]];
      if (v < lo || v > hi)
        bad(format("code %d at row %lld outside the %u-bit range [%d, %d]", v, static_cast<long long>(r), q.bits, lo, hi));
      dst[j] = v;
    }
  }
  // Scales and zero points, expanded to [rows * n_groups].
  size_t ns = static_cast<size_t>(q.rows * n_groups);
  w->scales.resize(ns);
  if (q.zero_points) w->zeros.resize(ns);
  for (size_t i = 0; i < ns; ++i) {
    size_t src = q.granularity == XQ_GRAN_TENSOR ? 0 : i;
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
  const xq_qweight& w = *op.qweight;
  xq_dtype dt = op.dst.dtype;
  void* out = op.dst.data;
  host.parallel_for(static_cast<uint64_t>(w.rows), 8, [&](uint64_t b, uint64_t e) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (uint64_t r = b; r < e; ++r) {
      dequant_row(w, static_cast<int64_t>(r), row.data());
      for (int64_t j = 0; j < w.cols; ++j) {
        int64_t c = w.perm.empty() ? j : w.perm[j];
        int64_t i = static_cast<int64_t>(r) * w.cols + c;
        if (dt == XQ_DTYPE_F32) static_cast<float*>(out)[i] = row[j];
        else if (dt == XQ_DTYPE_F16) static_cast<uint16_t*>(out)[i] = sdk::f32_to_f16(row[j]);
        else static_cast<uint16_t*>(out)[i] = sdk::f32_to_bf16(row[j]);
      }
    }
  });
}

void run_qmatmul(const Host& host, const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  const int64_t M = rows_of(op.src[0]), K = w.cols, N = w.rows, G = w.n_groups;
  const float* x = static_cast<const float*>(op.src[0].data);
  float* y = static_cast<float*>(op.dst.data);
  const float* bias = present(op.src[2]) ? static_cast<const float*>(op.src[2].data) : nullptr;
  if (M == 0) return;

  // Activations in the weight's (possibly permuted) column order.
  std::vector<float> xp;
  if (!w.perm.empty()) {
    xp.resize(static_cast<size_t>(M * K));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < K; ++j) xp[m * K + j] = x[m * K + w.perm[j]];
    x = xp.data();
  }
  const bool has_zero = !w.zeros.empty();

  if (w.act_scheme != XQ_ACT_NONE) {
    // W8A8: int8 activations (per token or static), int32 dot per group.
    std::vector<int8_t> qx(static_cast<size_t>(M * K));
    std::vector<float> sx(static_cast<size_t>(M));
    std::vector<int32_t> qsum(has_zero ? static_cast<size_t>(M * G) : 0);
    float st = w.act_scheme == XQ_ACT_STATIC_TENSOR ? w.input_scale : 0.0f;
    for (int64_t m = 0; m < M; ++m) {
      sx[m] = quantize_row_i8(x + m * K, K, qx.data() + m * K, st);
      if (has_zero)
        for (int64_t g = 0; g < G; ++g) {
          int32_t s = 0;
          for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j) s += qx[m * K + j];
          qsum[m * G + g] = s;
        }
    }
    host.parallel_for(static_cast<uint64_t>(N), 8, [&](uint64_t b, uint64_t e) {
      for (uint64_t n = b; n < e; ++n) {
        const int8_t* c = w.codes.data() + n * K;
        const float* s = w.scales.data() + n * G;
        const float* z = has_zero ? w.zeros.data() + n * G : nullptr;
        for (int64_t m = 0; m < M; ++m) {
          const int8_t* a = qx.data() + m * K;
          float acc = 0.0f;
          for (int64_t g = 0; g < G; ++g) {
            int32_t dot = 0;
            for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j)
              dot += static_cast<int32_t>(a[j]) * static_cast<int32_t>(c[j]);
            float v = static_cast<float>(dot);
            if (z) v -= z[g] * static_cast<float>(qsum[m * G + g]);
            acc += s[g] * v;
          }
          y[m * N + n] = sx[m] * acc + (bias ? bias[n] : 0.0f);
        }
      }
    });
    return;
  }

  if (M <= 4) {
    // Decode: fused GEMV over int8 codes (reads 1 byte per weight, not 4).
    std::vector<float> xsum(has_zero ? static_cast<size_t>(M * G) : 0);
    if (has_zero)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t g = 0; g < G; ++g) {
          float s = 0.0f;
          for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j) s += x[m * K + j];
          xsum[m * G + g] = s;
        }
    host.parallel_for(static_cast<uint64_t>(N), 16, [&](uint64_t b, uint64_t e) {
      for (uint64_t n = b; n < e; ++n) {
        const int8_t* c = w.codes.data() + n * K;
        const float* s = w.scales.data() + n * G;
        const float* z = has_zero ? w.zeros.data() + n * G : nullptr;
        for (int64_t m = 0; m < M; ++m) {
          const float* a = x + m * K;
          float acc = 0.0f;
          for (int64_t g = 0; g < G; ++g) {
            const int64_t gb = w.group_begin[g];
            float dot = dot_i8_f32(c + gb, a + gb, w.group_begin[g + 1] - gb);
            if (z) dot -= z[g] * xsum[m * G + g];
            acc += s[g] * dot;
          }
          y[m * N + n] = acc + (bias ? bias[n] : 0.0f);
        }
      }
    });
    return;
  }

  // Prefill: dequantize a tile of rows (in parallel) then one SGEMM per tile
  // from this thread, so OpenBLAS's own threads never nest in our pool.
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t{4} << 20) / std::max<int64_t>(K, 1)));
  std::vector<float> wt(static_cast<size_t>(tile * K));
  for (int64_t n0 = 0; n0 < N; n0 += tile) {
    int64_t nt = std::min(tile, N - n0);
    host.parallel_for(static_cast<uint64_t>(nt), 8, [&](uint64_t b, uint64_t e) {
      for (uint64_t r = b; r < e; ++r) dequant_row(w, n0 + static_cast<int64_t>(r), wt.data() + r * K);
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(nt), static_cast<int>(K),
                1.0f, x, static_cast<int>(K), wt.data(), static_cast<int>(K), 0.0f, y + n0, static_cast<int>(N));
  }
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}

}  // namespace xquant::cpu
