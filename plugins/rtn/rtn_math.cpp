#include "rtn_math.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace xquant::rtn {

namespace {

// Round half to even for |x| < 2^22 (all our pre-clamp codes are far
// smaller): adding and subtracting 1.5*2^23 leaves the default
// round-to-nearest-even result, and it vectorises on plain SSE2.
inline float round_even(float x) {
  const float magic = 12582912.0f;
  float big = std::min(std::max(x, -4194304.0f), 4194304.0f);
  return (big + magic) - magic;
}

float store_round(float v, xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F16: return sdk::round_to_f16(v);
    case XQ_DTYPE_BF16: return sdk::round_to_bf16(v);
    default: return v;
  }
}

float dtype_eps(xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F16: return 0.0009765625f;  // 2^-10
    case XQ_DTYPE_BF16: return 0.0078125f;    // 2^-7
    default: return std::numeric_limits<float>::epsilon();
  }
}

// Quantizes n values with one (scale, zp), accumulating error sums. The
// sums run in 8 float lanes per call (one group: at most a few thousand
// values, so float is exact enough) and are added to the double totals
// once, which lets the compiler vectorise the loop without -ffast-math.
constexpr int kLanes = 8;

void quantize_span(const float* x, int64_t n, float scale, int zp, int qmin, int qmax, int8_t* out, ErrorSums& e) {
  const float fzp = static_cast<float>(zp);
  const float fmin = static_cast<float>(qmin), fmax = static_cast<float>(qmax);
  float d2[kLanes] = {}, r2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      float v = x[i + l];
      float q = std::min(std::max(round_even(v / scale + fzp), fmin), fmax);
      out[i + l] = static_cast<int8_t>(q);
      float d = v - (q - fzp) * scale;
      d2[l] += d * d;
      r2[l] += v * v;
    }
  for (; i < n; ++i) {
    float v = x[i];
    float q = std::min(std::max(round_even(v / scale + fzp), fmin), fmax);
    out[i] = static_cast<int8_t>(q);
    float d = v - (q - fzp) * scale;
    d2[0] += d * d;
    r2[0] += v * v;
  }
  double sd = 0, sr = 0;
  for (int l = 0; l < kLanes; ++l) {
    sd += d2[l];
    sr += r2[l];
  }
  e.diff2 += sd;
  e.ref2 += sr;
}

void min_max(const float* x, int64_t n, float& lo, float& hi) {
  float a[kLanes] = {}, b[kLanes] = {};  // the range always includes 0
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      a[l] = std::min(a[l], x[i + l]);
      b[l] = std::max(b[l], x[i + l]);
    }
  for (; i < n; ++i) {
    a[0] = std::min(a[0], x[i]);
    b[0] = std::max(b[0], x[i]);
  }
  lo = *std::min_element(a, a + kLanes);
  hi = *std::max_element(b, b + kLanes);
}

}  // namespace

int64_t groups_per_row(const Scheme& s, int64_t cols) {
  if (s.granularity == XQ_GRAN_GROUP) return (cols + s.group_size - 1) / s.group_size;
  return 1;
}

void choose_qparams(const Scheme& s, float lo, float hi, float* scale, int8_t* zero_point) {
  const int qmin = -(1 << (s.bits - 1)), qmax = (1 << (s.bits - 1)) - 1;
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float sc;
  int zp = 0;
  if (s.symmetric) {
    float amax = std::max(-lo, hi);
    sc = amax / (static_cast<float>(qmax - qmin) / 2.0f);
  } else {
    sc = (hi - lo) / static_cast<float>(qmax - qmin);
  }
  if (sc == 0.0f) sc = dtype_eps(s.scale_dtype);
  // As compressed-tensors: the zero point from the scale as computed, then
  // the scale rounded to its storage dtype (the codes use the stored one).
  if (!s.symmetric) {
    float z = round_even(static_cast<float>(qmin) - lo / sc);
    zp = static_cast<int>(std::clamp(z, static_cast<float>(qmin), static_cast<float>(qmax)));
  }
  sc = store_round(sc, s.scale_dtype);
  if (sc == 0.0f) sc = dtype_eps(s.scale_dtype);
  *scale = sc;
  if (zero_point) *zero_point = static_cast<int8_t>(zp);
}

ErrorSums quantize_rows(const Scheme& s, const float* w, int64_t cols, int64_t row_begin, int64_t row_end,
                        int8_t* codes, float* scales, int8_t* zero_points) {
  const int qmin = -(1 << (s.bits - 1)), qmax = (1 << (s.bits - 1)) - 1;
  const int64_t gs = s.granularity == XQ_GRAN_GROUP ? s.group_size : cols;
  const int64_t ng = groups_per_row(s, cols);
  ErrorSums e;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const float* row = w + r * cols;
    for (int64_t g = 0; g < ng; ++g) {
      int64_t c0 = g * gs, n = std::min(gs, cols - c0);  // the last group may be ragged
      float lo, hi, sc;
      int8_t zp = 0;
      min_max(row + c0, n, lo, hi);
      choose_qparams(s, lo, hi, &sc, &zp);
      scales[r * ng + g] = sc;
      if (zero_points) zero_points[r * ng + g] = zp;
      quantize_span(row + c0, n, sc, zp, qmin, qmax, codes + r * cols + c0, e);
    }
  }
  return e;
}

ErrorSums quantize_tensor(const Scheme& s, const float* w, int64_t rows, int64_t cols, int8_t* codes, float* scale,
                          int8_t* zero_point) {
  const int qmin = -(1 << (s.bits - 1)), qmax = (1 << (s.bits - 1)) - 1;
  float lo, hi, sc;
  int8_t zp = 0;
  min_max(w, rows * cols, lo, hi);
  choose_qparams(s, lo, hi, &sc, &zp);
  *scale = sc;
  if (zero_point) *zero_point = zp;
  ErrorSums e;
  quantize_span(w, rows * cols, sc, zp, qmin, qmax, codes, e);
  return e;
}

}  // namespace xquant::rtn
