// rtn_math.hpp: round-to-nearest quantization of one weight matrix, the
// arithmetic compressed-tensors' calculate_qparams uses (reference §A4/§B1):
//
//   range extended to include 0;
//   symmetric:  scale = amax / ((2^b - 1) / 2),  zp = 0
//   asymmetric: scale = (max - min) / (2^b - 1), zp = clamp(round(qmin - min/scale))
//   q = clamp(round(x / scale + zp), qmin, qmax), qmin = -2^(b-1), qmax = 2^(b-1)-1
//
// round is half-to-even (torch.round). The zero point comes from the scale
// as computed; the scale is then rounded to the dtype it will be stored in
// and the codes are computed with that stored scale, so the checkpoint
// dequantizes to exactly what we measured (sdk/quantizer.hpp, used by the
// calibration algorithms, does the same). A zero scale becomes that dtype's
// epsilon (as compressed-tensors does).
//
// Kept free of the plugin ABI so the tests can call it directly.
#pragma once

#include <xquant/xq_tensor.h>

#include <cstdint>

namespace xquant::rtn {

struct Scheme {
  int bits = 4;
  bool symmetric = true;
  xq_granularity granularity = XQ_GRAN_GROUP;
  int64_t group_size = 128;
  xq_dtype scale_dtype = XQ_DTYPE_F32;
};

int64_t groups_per_row(const Scheme& s, int64_t cols);

// Squared-error accumulators of one call, for ||W - W_hat|| / ||W||.
struct ErrorSums {
  double diff2 = 0;
  double ref2 = 0;
};

// Quantizes rows [row_begin, row_end) of w ([rows, cols] row-major).
// codes: [rows*cols]; scales, zero_points (NULL when symmetric): per row
// `groups_per_row` entries (TENSOR granularity: callers use quantize_tensor).
ErrorSums quantize_rows(const Scheme& s, const float* w, int64_t cols, int64_t row_begin, int64_t row_end,
                        int8_t* codes, float* scales, int8_t* zero_points);

// TENSOR granularity: one scale (and zero point) for the whole matrix.
ErrorSums quantize_tensor(const Scheme& s, const float* w, int64_t rows, int64_t cols, int8_t* codes, float* scale,
                          int8_t* zero_point);

// The scale and zero point RTN picks for values in [lo, hi].
void choose_qparams(const Scheme& s, float lo, float hi, float* scale, int8_t* zero_point);

}  // namespace xquant::rtn
