// qgemm_kernels.hpp: the inner loops of the `cpu` provider's quantized
// prefill GEMMs (many activation rows), one table per instruction set, chosen
// at prepare time like the GEMV table of qkernels.hpp (same Isa, same
// dispatch). The drivers are in qgemm.cpp.
//
// dequant_rows: packed rows (layout of qkernels.hpp) to F32 in padded column
//   order, out[r * Kp + p] = (code - zero_g) * scale_g, the very expression of
//   the scalar dequantization, so every ISA gives the same bits (the library
//   is built with -ffp-contract=off). The weight-only prefill dequantizes a
//   panel of rows into a cache-sized buffer with it and hands that to SGEMM.
//
// panel_i8: the W8A8 prefill micro-kernel. A panel holds kPanelRows weight
//   rows interleaved four columns at a time, as VNNI's vpdpbusd reads them
//   (byte (q * kPanelRows + i) * 4 + t is column 4q + t of row i, unsigned:
//   the nibble u = code + 8 for INT4, code + 128 for INT8), so one 512-bit
//   load feeds 16 rows and one broadcast 4-byte activation word, with no
//   horizontal sums (the layout of oneDNN's VNNI int8 GEMM and of llamafile's
//   tinyBLAS). For activation row j < mt (int8 at a + j * lda) and panel row
//   i, out[j * kPanelRows + i] is exactly what dot4_i8 / dot8_i8 returns for
//   that pair: per group the exact int32 sum (for INT8 less 128 * asum[j * G
//   + g], the group's activation sum, so the result is sum code * a), then
//   tot += ps[g * kPanelRows + i] * float(d) in group order. Every table
//   has one (AVX2's in qgemm_panel_avx2.cpp); the field may be nullptr for a
//   table without it (then W8A8 runs pair by pair).
//
// panel_q8: the weight-only integer prefill micro-kernel, on the same panels,
//   for activations of the q8 GEMV's kind (int8 with one float scale per
//   32-column block: row j at a + j * lda, its block scales at sa + j * ldsa).
//   out[j * kPanelRows + i] is bit for bit what dot4_q8 (INT4 codes) or
//   dot8_q8 (INT8 codes) returns for that pair: per block the exact int32
//   sum less offset * bsum[j * ldsa + b] when bsum is set (the block's
//   activation sum: 128 for INT8 panels, so it is sum code * a; the packed
//   INT4 weights pass no bsum and keep the unsigned nibbles, whose offset the
//   caller subtracts as it does after dot4_q8; GGUF Q4_0 passes 8 and gets
//   sum (u - 8) * a, llama.cpp's integer block dot), then tot += (ps[g *
//   kPanelRows + i] * sa[b]) * float(d) in block order, the float steps of
//   the pair kernels. pm (null but for GGUF Q4_K, whose blocks carry a
//   min: w = d * sc * q - dmin * m) holds per-row block mins in ps's layout,
//   and am the activation rows' sa[b] * (sum of their codes over block b),
//   strided as sa; when set, each block also does tot -= pm[g * kPanelRows +
//   i] * am[j * ldsa + b] after its scaled dot. int8_codes says which
//   codes the panel holds (INT8, bytes up to 255, or 4-bit nibbles): only
//   AVX2 reads it, whose INT4 products sum in int16 and need bytes <= 15.
//   nullptr in a table without it (then integer prefill takes the q8 tiles
//   of qkernels.hpp).
//
// panel_q6k: GGUF Q6_K prefill on INT8 panels. Each 32-column block of a
//   panel row holds the six-bit codes q (0..63, bytes as vpdpbusd reads
//   them) of two 16-column sub-blocks h = 0, 1 with int8 scales psc[(2b + h)
//   * kPanelRows + i] (block_q6_K's scales, as int32) and the super-block's
//   d in ps[b * kPanelRows + i]. Per block: the exact int32 dots of each half
//   with the activation row, less 32 times that half's code sum (sum16[j *
//   2 * ldsa + 2b + h]), times the half's scale, added in int32 (|sum| <=
//   2 * 16 * 32 * 128 * 128 = 2^24, so exact as a float too), then tot +=
//   (ps * sa[j * ldsa + b]) * float(that): llama.cpp's
//   ggml_vec_dot_q6_K_q8_K, with one activation scale per 32 columns as the
//   other panels take instead of per 256. nullptr in a table without it
//   (then Q6_K prefill is dequantize + SGEMM).
#pragma once

#include "qkernels.hpp"

#include <cstdint>

namespace xquant::cpu {

inline constexpr int64_t kPanelRows = 16;    // weight rows per W8A8 panel (one 512-bit lane each)
inline constexpr int64_t kPanelActRows = 8;  // activation rows per panel_i8 call, at most
// W8A8 calls with fewer activation rows stay pair by pair: packing a panel
// costs about what 16 rows of its products do (bench_qgemm --m 5/8/16/32 with
// XQUANT_CPU_GEMV_ROWS=4 and 100000: the panels lose 2.3x at M = 5, break
// even at 16 and win 1.8x at 32, 1 thread, SmolLM2 shapes).
inline constexpr int64_t kPanelMinActRows = 16;

struct QGemmKernels {
  const char* name;
  // The panel of weight rows [n0, n0 + nr) (nr <= kPanelRows; the rest are
  // zero codes with zero scales) in panel_i8's layout: panel[Kp * kPanelRows]
  // and ps[G * kPanelRows]. Pure data movement: every ISA writes the same bytes.
  void (*pack_panel_i8)(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, int64_t G, int64_t Kp,
                        int64_t n0, int64_t nr, uint8_t* panel, float* ps);
  void (*dequant_rows)(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, const float* z, int64_t G,
                       const int64_t* bb, int64_t nrows, float* out);
  void (*panel_i8)(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int32_t* asum,
                   int64_t mt, const int64_t* bb, int64_t G, bool int8_codes, float* out);
  // W8A8 prefill of INT8 codes takes the panels (INT4 codes always do when
  // panel_i8 is set): false where the pair-by-pair dots measured faster
  // (AVX2, qgemm_panel_avx2.cpp says why).
  bool panels_for_int8;
  void (*panel_q8)(const uint8_t* panel, const float* ps, const float* pm, const float* am, const int8_t* a,
                   int64_t lda, const float* sa, int64_t ldsa, const int32_t* bsum, int32_t offset, int64_t mt,
                   const int64_t* bb, int64_t G, bool int8_codes, float* out) = nullptr;
  // XQUANT_CPU_PREFILL=auto takes panel_q8 for a weight whose decode already
  // multiplies q8 activations when the flag for its code width is set: where
  // the panels measured faster than dequantize + SGEMM (qweight.cpp).
  bool q8_panels_by_default_int4 = false;
  bool q8_panels_by_default_int8 = false;
  void (*panel_q6k)(const uint8_t* panel, const float* ps, const int32_t* psc, const int8_t* a, int64_t lda,
                    const float* sa, int64_t ldsa, const int32_t* sum16, int64_t mt, int64_t nblk,
                    float* out) = nullptr;
  // XQUANT_CPU_PREFILL=auto takes panel_q6k for Q6_K weights (measured faster
  // than dequantize + SGEMM).
  bool q6k_panels_by_default = false;
};

// qgemm_kernels_scalar.cpp (also qgemm_kernels_of and the scalar panel
// packing), qgemm_kernels_avx2.cpp (with qgemm_panel_avx2.cpp),
// qgemm_kernels_avx512.cpp.
extern const QGemmKernels kScalarQGemmKernels;
extern const QGemmKernels kAvx2QGemmKernels;
extern const QGemmKernels kAvx512QGemmKernels;
const QGemmKernels& qgemm_kernels_of(Isa isa);
void pack_panel_i8_scalar(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, int64_t G, int64_t Kp,
                          int64_t n0, int64_t nr, uint8_t* panel, float* ps);
// qgemm_panel_avx2.cpp: the AVX2 table's panel kernels (vpmaddubsw for INT4,
// vpmaddwd on widened operands for INT8) and its word-at-a-time packing
// (plain C++, the same bytes as pack_panel_i8_scalar).
void panel_i8_avx2(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int32_t* asum,
                   int64_t mt, const int64_t* bb, int64_t G, bool int8_codes, float* out);
void panel_q8_avx2(const uint8_t* panel, const float* ps, const float* pm, const float* am, const int8_t* a,
                   int64_t lda, const float* sa, int64_t ldsa, const int32_t* bsum, int32_t offset, int64_t mt,
                   const int64_t* bb, int64_t G, bool int8_codes, float* out);
void pack_panel_i8_words(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, int64_t G, int64_t Kp,
                         int64_t n0, int64_t nr, uint8_t* panel, float* ps);

}  // namespace xquant::cpu
