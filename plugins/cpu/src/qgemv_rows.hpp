// qgemv_rows.hpp: the weight-only decode GEMV of the `cpu` provider's packed
// INT4/INT8 weights (layout in qkernels.hpp) with int8 activations, one call
// per range of output rows: the activation row is quantized once per call to
// int8 with one scale per 32-column block (llama.cpp's quantize_row_q8_0,
// ggml-quants.c), and each row's result is
//   y[n] = sum_g s[n,g] * sum_{b in g} sa[b] * (sum over block b of c * q)
//          - sum_g s[n,g] * z[n,g] * sum_{b in g} sa[b] * (sum of q over b)
//          + bias[n]
// with c the signed code (INT4: nibble - 8) and z the zero point (0 when the
// weight is symmetric). Every block's integer dot product is exact.
//
// Why a row range and not a per-row dot (QKernels::dot4_q8): at 1 thread the
// per-row indirect call and the per-group offset loop cost 15% of a W4A16
// decode's instructions (callgrind). Here the code offset (8 for the
// unsigned nibbles the u8 x s8 dot products take, 128 for INT8 codes moved to
// unsigned on VNNI) is subtracted inside the integer dot as one vector
// subtraction per block (QuantizedActs::corr), the loop over rows runs inside
// the ISA's function, and only asymmetric weights pay a per-group loop.
#pragma once

#include "qkernels.hpp"

#include <cstdint>
#include <vector>

namespace xquant::cpu {

// One activation row, quantized for one ISA's row kernels (quantize_acts).
// The per-block vectors are laid out as the kernels' int32 lanes: 8 lanes
// per 32-column block.
struct QuantizedActs {
  const int8_t* q = nullptr;     // [nblk * 32] codes, |q| <= 127, padded column order
  const float* sa8 = nullptr;    // [nblk * 8] block b's scale in lanes 8b..8b+7
  const int32_t* corr = nullptr; // [nblk * 8] lane 8b: offset * (sum of q over block b), other lanes 0
  const float* gsum = nullptr;   // [G] sum over the group's blocks of sa[b] * (sum of q over b)
  // The same per-block values once each (the eight-row kernels of
  // qgemv_rows8.hpp and the AVX-512 row kernel broadcast them; at K = 8960
  // the lane vectors above are 18 KB, which the weight stream pushed out of L1).
  const float* sa = nullptr;     // [nblk] block b's scale
  const int32_t* corr1 = nullptr;  // [nblk] offset * (sum of q over block b)
};

// The weight side: rows of a packed weight (xq_qweight's fields).
struct PackedRows {
  const uint8_t* codes;   // row n at codes + n * row_bytes
  int64_t row_bytes;
  const float* scales;    // [rows * G]
  const float* zeros;     // [rows * G] or null
  const int64_t* bb;      // [G + 1] block ranges of the groups
  int64_t G;
  const float* bias;      // [rows] or null
  // INT4 only, or null: the same codes and scales with every eight rows
  // interleaved (qgemv_rows8.hpp, interleave_rows8), for the eight-row kernels.
  const uint8_t* codes8 = nullptr;
  const float* scales8 = nullptr;
};

struct GemvRowsKernels {
  const char* name;
  // The offsets this table's INT4 / INT8 kernels subtract through
  // QuantizedActs::corr (0: the kernel forms signed products itself).
  int32_t offset4, offset8;
  // y[n] for n in [n0, n1), as the header comment states.
  void (*gemv4)(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);
  void (*gemv8)(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);
};

// qgemv_rows_scalar.cpp (the reference), qgemv_rows_avx2.cpp (AVX2 + FMA:
// vpmaddubsw + vpmaddwd), qgemv_rows_avx512.cpp (AVX-512 VNNI: vpdpbusd on
// 256 bits, one block per instruction). The ISA conditions of qkernels.hpp.
extern const GemvRowsKernels kScalarGemvRows;
extern const GemvRowsKernels kAvx2GemvRows;
extern const GemvRowsKernels kAvx512GemvRows;
const GemvRowsKernels& gemv_rows_of(Isa isa);

// Grow-only buffers for one quantized activation row.
struct QuantizedActsBuffers {
  std::vector<int8_t> q;
  std::vector<float> sa8, gsum, sa;
  std::vector<int32_t> corr, corr1;
};

// Quantizes x[0 .. nblk * 32) (padded order, zeros in the padding) for table
// t and a weight of INT4 (int4) or INT8 codes with groups bb[0..G]; gsum is
// filled only when with_gsum (asymmetric weights). Scales as
// quantize_row_q8_0: sa = max|x| / 127, q = round-to-nearest(x / sa).
QuantizedActs quantize_acts(const GemvRowsKernels& t, bool int4, const float* x, int64_t nblk, const int64_t* bb,
                            int64_t G, bool with_gsum, QuantizedActsBuffers& buf);

// The zero-point term of row n, subtracted from its dot product (inline: the
// ISA files call it inside their row loops).
inline float zero_point_term(const PackedRows& w, const QuantizedActs& a, int64_t n) {
  if (!w.zeros) return 0.0f;
  const float* s = w.scales + n * w.G;
  const float* z = w.zeros + n * w.G;
  float t = 0.0f;
  for (int64_t g = 0; g < w.G; ++g) t += s[g] * z[g] * a.gsum[g];
  return t;
}

}  // namespace xquant::cpu
