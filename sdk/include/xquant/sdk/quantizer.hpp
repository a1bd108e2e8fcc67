// quantizer.hpp: the weight quantizer arithmetic shared by the calibration
// algorithm plugins (smoothquant, awq, gptq), header-only because plugins
// cannot link each other. It is the compressed-tensors arithmetic that the
// rtn plugin implements (compressed_tensors/quantization/utils/helpers.py calculate_qparams), so every algorithm writes
// tensors that dequantize exactly like rtn's:
//
//   the [lo, hi] range is extended to include 0;
//   symmetric:  scale = amax / ((2^b - 1) / 2),  zp = 0
//   asymmetric: scale = (hi - lo) / (2^b - 1),    zp = clamp(round(qmin - lo/scale))
//   q = clamp(round(x / scale + zp), qmin, qmax),  qmin = -2^(b-1), qmax = 2^(b-1)-1
//   x_hat = (q - zp) * scale
//
// round is half-to-even (torch.round); x / scale is a true division (as torch
// does it) so codes match llm-compressor bit for bit. Each scale is rounded to
// the dtype it will be stored in before codes are computed with it, so the
// checkpoint dequantizes to exactly what the algorithm measured; the zero
// point, as in compressed-tensors, comes from the scale before that rounding.
// A zero scale becomes that dtype's epsilon (as compressed-tensors does).
#pragma once

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/host.hpp>
#include <xquant/xq_algorithm.h>

#include <algorithm>
#include <mutex>
#include <cmath>
#include <cstdint>
#include <limits>

namespace xquant::sdk::quant {

struct Scheme {
  int bits = 4;           // code width (8 for FP8)
  bool fp8 = false;       // FP8 E4M3 codes (quantizer_fp8.hpp), not integers
  bool symmetric = true;
  xq_strategy strategy = XQ_STRATEGY_GROUP;
  int64_t group_size = 128;  // GROUP only
  xq_dtype scale_dtype = XQ_DTYPE_F32;

  int qmin() const { return -(1 << (bits - 1)); }
  int qmax() const { return (1 << (bits - 1)) - 1; }
  // Columns per group for a row of `cols` (the whole row unless GROUP).
  int64_t group_cols(int64_t cols) const {
    return strategy == XQ_STRATEGY_GROUP ? std::min(group_size, cols) : cols;
  }
  // Groups per row; 1 for CHANNEL and TENSOR.
  int64_t groups(int64_t cols) const {
    const int64_t gs = group_cols(cols);
    return strategy == XQ_STRATEGY_GROUP ? (cols + gs - 1) / gs : 1;
  }
};

// Checks a rule's scheme and converts it; `what` names the Linear in errors.
// FP8 codes (bits XQ_BITS_F8_E4M3) only where the caller quantizes them
// (allow_fp8: rtn); every other algorithm refuses them here.
inline Scheme scheme_from(const xq_quant_scheme& sc, const char* what, bool allow_fp8 = false) {
  if (sc.bits == XQ_BITS_F8_E4M3) {
    if (!allow_fp8) fail(XQ_ERR_UNSUPPORTED, format("%s: FP8 (float) weights are not supported by this algorithm; use rtn", what));
    if (!sc.symmetric) fail(XQ_ERR_UNSUPPORTED, format("%s: FP8 weights are symmetric", what));
    if (sc.strategy != XQ_STRATEGY_CHANNEL && sc.strategy != XQ_STRATEGY_TENSOR)
      fail(XQ_ERR_UNSUPPORTED, format("%s: FP8 weights take per-channel or per-tensor scales", what));
  } else if (sc.bits < 2 || sc.bits > 8) {
    fail(XQ_ERR_INVALID_ARGUMENT, format("%s: bits must be 2..8 (or FP8), got %u", what, sc.bits));
  }
  if (sc.strategy == XQ_STRATEGY_GROUP && sc.group_size <= 0)
    fail(XQ_ERR_INVALID_ARGUMENT, format("%s: group strategy needs group_size > 0", what));
  if (sc.strategy != XQ_STRATEGY_GROUP && sc.strategy != XQ_STRATEGY_CHANNEL && sc.strategy != XQ_STRATEGY_TENSOR)
    fail(XQ_ERR_UNSUPPORTED, format("%s: strategy %d is not supported (tensor, channel or group)", what,
                                    static_cast<int>(sc.strategy)));
  if (sc.scale_dtype != XQ_DTYPE_INVALID && sc.scale_dtype != XQ_DTYPE_F32 && sc.scale_dtype != XQ_DTYPE_F16 &&
      sc.scale_dtype != XQ_DTYPE_BF16)
    fail(XQ_ERR_UNSUPPORTED, format("%s: scale dtype must be F32, F16 or BF16", what));
  Scheme s;
  s.fp8 = sc.bits == XQ_BITS_F8_E4M3;
  s.bits = static_cast<int>(XQ_CODE_WIDTH(sc.bits));
  s.symmetric = sc.symmetric != 0;
  s.strategy = sc.strategy;
  s.group_size = sc.group_size;
  s.scale_dtype = sc.scale_dtype == XQ_DTYPE_INVALID ? XQ_DTYPE_F32 : sc.scale_dtype;
  return s;
}

// Checks that a Linear's weight is a 2-D F32 [out, in] view.
inline void check_weight(const xq_linear_input& in) {
  const xq_tensor_view& w = in.weight;
  if (w.dtype != XQ_DTYPE_F32 || w.ndim != 2 || !w.data || w.shape[0] <= 0 || w.shape[1] <= 0)
    fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the weight must be a non-empty 2-D F32 view", in.name));
  if (w.nbytes != 0 && w.nbytes < static_cast<uint64_t>(w.shape[0] * w.shape[1]) * sizeof(float))
    fail(XQ_ERR_INVALID_ARGUMENT, format("%s: weight view holds %llu bytes, shape needs %lld", in.name,
                                         static_cast<unsigned long long>(w.nbytes),
                                         static_cast<long long>(w.shape[0] * w.shape[1] * 4)));
}

// Round half to even for |x| < 2^22 (codes before clamping are far smaller;
// larger values are clamped first, which cannot change the clamped code).
inline float round_even(float x) {
  const float magic = 12582912.0f;  // 1.5 * 2^23
  float big = std::clamp(x, -4194304.0f, 4194304.0f);
  return (big + magic) - magic;
}

inline float store_round(float v, xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F16: return round_to_f16(v);
    case XQ_DTYPE_BF16: return round_to_bf16(v);
    default: return v;
  }
}

inline float dtype_eps(xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F16: return 0.0009765625f;  // 2^-10
    case XQ_DTYPE_BF16: return 0.0078125f;    // 2^-7
    default: return std::numeric_limits<float>::epsilon();
  }
}

// One group's quantization parameters.
struct Params {
  float scale = 1.0f;
  float zp = 0.0f;  // integer-valued, in the signed code domain
};

// The scale and zero point for values in [lo, hi].
inline Params choose(const Scheme& s, float lo, float hi) {
  const int qmin = s.qmin(), qmax = s.qmax();
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float raw;
  if (s.symmetric) raw = std::max(-lo, hi) / (static_cast<float>(qmax - qmin) / 2.0f);
  else raw = (hi - lo) / static_cast<float>(qmax - qmin);
  float sc = store_round(raw, s.scale_dtype);
  if (sc == 0.0f) sc = dtype_eps(s.scale_dtype);
  Params p;
  p.scale = sc;
  // compressed-tensors derives the zero point from the scale before it is
  // rounded to the storage dtype (calculate_qparams steps 1 then 3).
  if (!s.symmetric)
    p.zp = std::clamp(round_even(static_cast<float>(qmin) - lo / (raw == 0.0f ? sc : raw)),
                      static_cast<float>(qmin), static_cast<float>(qmax));
  return p;
}

// Parameters of n values (min/max over them).
// The loops below keep 8 independent lanes so that they vectorise without
// -ffast-math (a float reduction may not be reordered otherwise).
constexpr int kLanes = 8;

inline Params choose_span(const Scheme& s, const float* x, int64_t n) {
  float lo[kLanes] = {}, hi[kLanes] = {};  // the range always includes 0
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      lo[l] = std::min(lo[l], x[i + l]);
      hi[l] = std::max(hi[l], x[i + l]);
    }
  for (; i < n; ++i) {
    lo[0] = std::min(lo[0], x[i]);
    hi[0] = std::max(hi[0], x[i]);
  }
  return choose(s, *std::min_element(lo, lo + kLanes), *std::max_element(hi, hi + kLanes));
}

// The code of x (as float) under p.
inline float code(float x, const Params& p, float qmin, float qmax) {
  return std::clamp(round_even(x / p.scale + p.zp), qmin, qmax);
}
inline float dequant(float q, const Params& p) { return (q - p.zp) * p.scale; }

// Squared-error sums for ||W - W_hat|| / ||W||.
struct ErrorSums {
  double diff2 = 0;
  double ref2 = 0;
  void add(const ErrorSums& o) {
    diff2 += o.diff2;
    ref2 += o.ref2;
  }
  double rel() const { return ref2 > 0 ? std::sqrt(diff2 / ref2) : 0.0; }
};

// Quantizes n values with one p: writes codes (may be NULL) and the
// dequantized values (may be NULL, may alias x).
inline void quantize_span(const float* x, int64_t n, const Params& p, int qmin, int qmax, int8_t* codes,
                          float* deq) {
  const float fmin = static_cast<float>(qmin), fmax = static_cast<float>(qmax);
  for (int64_t i = 0; i < n; ++i) {
    float q = code(x[i], p, fmin, fmax);
    if (codes) codes[i] = static_cast<int8_t>(q);
    if (deq) deq[i] = dequant(q, p);
  }
}

// Round-to-nearest of rows [r0, r1) of w [rows, cols] with CHANNEL or GROUP
// strategy: codes [rows*cols] (may be NULL), scales/zero points at
// r * groups + g (zero points NULL when symmetric or unwanted), the
// dequantized weights into deq (may be NULL, may alias w).
inline void rtn_rows(const Scheme& s, const float* w, int64_t cols, int64_t r0, int64_t r1, int8_t* codes,
                     float* scales, int8_t* zero_points, float* deq) {
  const int64_t gs = s.group_cols(cols), ng = s.groups(cols);
  for (int64_t r = r0; r < r1; ++r) {
    const float* row = w + r * cols;
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t c0 = g * gs, n = std::min(gs, cols - c0);  // the last group may be ragged
      Params p = choose_span(s, row + c0, n);
      if (scales) scales[r * ng + g] = p.scale;
      if (zero_points) zero_points[r * ng + g] = static_cast<int8_t>(p.zp);
      quantize_span(row + c0, n, p, s.qmin(), s.qmax(), codes ? codes + r * cols + c0 : nullptr,
                    deq ? deq + r * cols + c0 : nullptr);
    }
  }
}

// Quantizes n values with one p into codes and returns the squared-error
// sums of x against its dequantization (float lanes per call, one group at
// most a few thousand values; added to double totals once).
inline ErrorSums quantize_span_sums(const float* x, int64_t n, const Params& p, int qmin, int qmax, int8_t* codes) {
  const float fmin = static_cast<float>(qmin), fmax = static_cast<float>(qmax);
  float d2[kLanes] = {}, r2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float v = x[i + l], q = code(v, p, fmin, fmax), d = v - dequant(q, p);
      codes[i + l] = static_cast<int8_t>(q);
      d2[l] += d * d;
      r2[l] += v * v;
    }
  for (; i < n; ++i) {
    const float v = x[i], q = code(v, p, fmin, fmax), d = v - dequant(q, p);
    codes[i] = static_cast<int8_t>(q);
    d2[0] += d * d;
    r2[0] += v * v;
  }
  ErrorSums e;
  for (int l = 0; l < kLanes; ++l) {
    e.diff2 += d2[l];
    e.ref2 += r2[l];
  }
  return e;
}

// rtn_rows without a dequantized copy: codes, scales, zero points (NULL
// when symmetric) and the error sums of the rows.
inline ErrorSums rtn_rows_sums(const Scheme& s, const float* w, int64_t cols, int64_t r0, int64_t r1, int8_t* codes,
                               float* scales, int8_t* zero_points) {
  const int64_t gs = s.group_cols(cols), ng = s.groups(cols);
  ErrorSums e;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t c0 = g * gs, n = std::min(gs, cols - c0);  // the last group may be ragged
      const Params p = choose_span(s, w + r * cols + c0, n);
      scales[r * ng + g] = p.scale;
      if (zero_points) zero_points[r * ng + g] = static_cast<int8_t>(p.zp);
      e.add(quantize_span_sums(w + r * cols + c0, n, p, s.qmin(), s.qmax(), codes + r * cols + c0));
    }
  return e;
}

// TENSOR strategy: one scale (and zero point) for the whole matrix.
inline ErrorSums rtn_tensor_sums(const Scheme& s, const float* w, int64_t rows, int64_t cols, int8_t* codes,
                                 float* scale, int8_t* zero_point) {
  const Params p = choose_span(s, w, rows * cols);
  *scale = p.scale;
  if (zero_point) *zero_point = static_cast<int8_t>(p.zp);
  return quantize_span_sums(w, rows * cols, p, s.qmin(), s.qmax(), codes);
}

// Fake-quantizes w [rows, cols] into out (may alias w) with any strategy,
// spreading rows over the host's threads. Used by searches (AWQ) that need
// Q(W) as floats.
inline void fake_quantize(const Host& host, const Scheme& s, const float* w, int64_t rows, int64_t cols, float* out) {
  if (s.strategy == XQ_STRATEGY_TENSOR) {
    Params p = choose_span(s, w, rows * cols);
    quantize_span(w, rows * cols, p, s.qmin(), s.qmax(), nullptr, out);
    return;
  }
  host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
    rtn_rows(s, w, cols, static_cast<int64_t>(b), static_cast<int64_t>(e), nullptr, nullptr, nullptr, out);
  });
}

// Allocates the canonical tensor's buffers for w [rows, cols] under s (codes,
// scales, zero points when asymmetric) and fills its metadata from the rule's
// scheme. The caller fills the buffers; on error it releases them.
inline void alloc_quant(const Host& host, const Scheme& s, const xq_quant_scheme& rule, int64_t rows, int64_t cols,
                        xq_quant_tensor& q) {
  const int64_t ng = s.groups(cols);
  const int64_t n_scales = s.strategy == XQ_STRATEGY_TENSOR ? 1 : rows * ng;
  q.codes = host.alloc<int8_t>(static_cast<size_t>(rows * cols));
  q.scales = host.alloc<float>(static_cast<size_t>(n_scales));
  if (!s.symmetric) q.zero_points = host.alloc<int8_t>(static_cast<size_t>(n_scales));
  q.bits = s.fp8 ? XQ_BITS_F8_E4M3 : static_cast<uint32_t>(s.bits);
  q.symmetric = s.symmetric ? 1 : 0;
  q.strategy = s.strategy;
  q.rows = rows;
  q.cols = cols;
  q.group_size = s.strategy == XQ_STRATEGY_GROUP ? s.group_size : cols;
  q.n_groups = ng;
  q.scale_dtype = s.scale_dtype;
  q.act_scheme = rule.act_scheme;
  q.act_bits = rule.act_scheme == XQ_ACT_NONE ? 0 : (rule.act_bits ? rule.act_bits : 8);
}

// RTN of a whole matrix into q (allocated here, any strategy); returns
// the error sums of w vs its dequantization. deq (may be NULL) receives the
// dequantized weights.
inline ErrorSums rtn_matrix(const Host& host, const Scheme& s, const xq_quant_scheme& rule, const float* w,
                            int64_t rows, int64_t cols, xq_quant_tensor& q, float* deq) {
  alloc_quant(host, s, rule, rows, cols, q);
  if (s.strategy == XQ_STRATEGY_TENSOR) {
    Params p = choose_span(s, w, rows * cols);
    q.scales[0] = p.scale;
    if (q.zero_points) q.zero_points[0] = static_cast<int8_t>(p.zp);
    quantize_span(w, rows * cols, p, s.qmin(), s.qmax(), q.codes, deq);
  } else {
    host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
      rtn_rows(s, w, cols, static_cast<int64_t>(b), static_cast<int64_t>(e), q.codes, q.scales, q.zero_points, deq);
    });
  }
  ErrorSums e;
  if (deq) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      double d = static_cast<double>(w[i]) - deq[i];
      e.diff2 += d * d;
      e.ref2 += static_cast<double>(w[i]) * w[i];
    }
  }
  return e;
}

// The static per-tensor activation scale for an input whose per-column
// max |x| is absmax[j] / divisor[j] (divisor NULL: 1): the symmetric int-b
// scale of the compressed-tensors arithmetic, amax / ((2^b - 1) / 2).
inline float static_input_scale(const float* absmax, const float* divisor, int64_t cols, uint32_t act_bits,
                                xq_dtype scale_dtype) {
  float amax = 0.0f;
  for (int64_t j = 0; j < cols; ++j) amax = std::max(amax, divisor ? absmax[j] / divisor[j] : absmax[j]);
  const int bits = act_bits ? static_cast<int>(act_bits) : 8;
  float sc = amax / (static_cast<float>((1 << bits) - 1) / 2.0f);
  sc = store_round(sc, scale_dtype);
  return sc == 0.0f ? dtype_eps(scale_dtype) : sc;
}

}  // namespace xquant::sdk::quant
