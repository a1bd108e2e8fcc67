// quantizer_fp8.hpp: round-to-nearest into FP8 E4M3 codes, compressed-tensors'
// arithmetic for type float, num_bits 8 (the FP8_DYNAMIC preset's weights,
// compressed_tensors/quantization/quant_scheme.py):
//
//   scale = amax / 448 per output channel (or per tensor), amax = max |w|,
//           rounded to the scale's storage dtype, 0 -> that dtype's epsilon
//           (helpers.py calculate_qparams: bit_range = 448 - (-448), scale =
//           max_val_pos / (bit_range / 2));
//   code  = e4m3(clamp(w / scale, -448, 448))     (forward_helpers.py _quantize
//           and quant_args.py round_to_quantized_type_args)
//   w_hat = e4m3_value(code) * scale
//
// w / scale is a true float division, as torch computes it for an F32 weight.
#pragma once

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/quantizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace xquant::sdk::quant {

// The E4M3 scale of values whose largest magnitude is amax.
inline float fp8_scale(float amax, xq_dtype scale_dtype) {
  float sc = store_round(amax / kE4M3Max, scale_dtype);
  return sc == 0.0f ? dtype_eps(scale_dtype) : sc;
}

// max |x| over n values (8 lanes, so it vectorises).
inline float abs_max(const float* x, int64_t n) {
  float m[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) m[l] = std::max(m[l], std::fabs(x[i + l]));
  for (; i < n; ++i) m[0] = std::max(m[0], std::fabs(x[i]));
  return *std::max_element(m, m + kLanes);
}

// Codes of n values under `scale`, and the error sums of x vs e4m3(code) * scale.
inline ErrorSums fp8_span_sums(const float* x, int64_t n, float scale, int8_t* codes) {
  ErrorSums e;
  double d2 = 0, r2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = f32_to_e4m3(x[i] / scale);
    codes[i] = static_cast<int8_t>(c);
    const double d = static_cast<double>(x[i]) - static_cast<double>(e4m3_to_f32(c) * scale);
    d2 += d * d;
    r2 += static_cast<double>(x[i]) * x[i];
  }
  e.diff2 = d2;
  e.ref2 = r2;
  return e;
}

// Rows [r0, r1) of w [rows, cols], one scale per row.
inline ErrorSums rtn_fp8_rows(const Scheme& s, const float* w, int64_t cols, int64_t r0, int64_t r1, int8_t* codes,
                              float* scales) {
  ErrorSums e;
  for (int64_t r = r0; r < r1; ++r) {
    const float* row = w + r * cols;
    scales[r] = fp8_scale(abs_max(row, cols), s.scale_dtype);
    e.add(fp8_span_sums(row, cols, scales[r], codes + r * cols));
  }
  return e;
}

// The whole matrix under one scale.
inline ErrorSums rtn_fp8_tensor(const Scheme& s, const float* w, int64_t rows, int64_t cols, int8_t* codes,
                                float* scale) {
  *scale = fp8_scale(abs_max(w, rows * cols), s.scale_dtype);
  return fp8_span_sums(w, rows * cols, *scale, codes);
}

}  // namespace xquant::sdk::quant
