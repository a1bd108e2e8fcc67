// gguf_gemv_rows.hpp: decode GEMVs over a range of rows of one GGUF block
// part (gguf_blocks_weight.hpp), for block types where a row-at-a-time kernel
// (BlockKernels) leaves speed on the table at one thread: Q4_0, Q8_0 and
// Q4_K on AVX-512 VNNI (gguf_gemv_rows_avx512.cpp), Q4_K on AVX2
// (gguf_gemv_rows_avx2.cpp; Q4_K in gguf_gemv_rows_q4k.inc).
//
// Q4_0 / Q8_0: the weight codes enter vpdpbusd unsigned (Q4_0 nibbles as
// stored, 0..15; Q8_0 codes + 128) on 256-bit vectors, and the offset that
// adds (8 or 128 times each activation block's code sum,
// QuantizedRow::sum32) is one scalar FMA per block instead of a vector
// subtraction and two sign operations:
//   y[r] = sum_b dw[b] * da[b] * (sum_i u[b,i] * q[b,i])
//        - sum_b dw[b] * (offset * da[b] * sum32[b])  (+ bias[r])
// which equals ggml_vec_dot_q4_0_q8_0 / ggml_vec_dot_q8_0_q8_0
// (ggml-cpu/arch/x86/quants.c) up to float summation order.
#pragma once

#include "gguf_blocks.hpp"
#include "qkernels.hpp"

#include <cstdint>
#include <cstring>

namespace xquant::cpu {

// The eight 6-bit scales (out[0..7]) and mins (out[8..15]) of one
// block_q4_K's 12 scale bytes, as ggml's AVX2 ggml_vec_dot_q4_K_q8_K unpacks
// them (its utmp / kmask1..3 steps; get_scale_min_k4 in ggml-quants.c).
inline void q4_k_scales_mins(const uint8_t* scales12, uint8_t out[16]) {
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  uint32_t utmp[4];
  std::memcpy(utmp, scales12, 12);
  utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = utmp[1] & kmask1;
  utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kmask1;
  std::memcpy(out, utmp, 16);
}

// y[r] for rows [0, rows) of a part whose row r starts at w + r * row_bytes
// (nb blocks each), against one quantized activation row; bias (or null)
// indexed like y.
using BlockRowsKernel = void (*)(const uint8_t* w, uint64_t row_bytes, int64_t rows, const QuantizedRow& a,
                                 int64_t nb, float* y, const float* bias);

// gguf_gemv_rows_avx512.cpp, gguf_gemv_rows_avx2.cpp.
extern const BlockRowsKernel kAvx2Q4_KRows;
extern const BlockRowsKernel kAvx512Q4_0Rows;
extern const BlockRowsKernel kAvx512Q8_0Rows;
extern const BlockRowsKernel kAvx512Q4_KRows;
// Q4_0 eight rows at a time (qgemv_rows8_avx512.cpp, qgemv_rows8_avx2.cpp;
// the register transpose of qgemv_rows8.hpp; gguf_q4_0_rows8.inc).
extern const BlockRowsKernel kAvx2Q4_0Rows8;
extern const BlockRowsKernel kAvx512Q4_0Rows8;
// The same on the interleaved copy of a part's whole groups of eight rows
// (interleave_q4_0_rows8, qgemv_rows8.hpp): part rows [r0, r1), y and bias
// indexed by part row, w the stored blocks (for rows outside whole groups).
using BlockRows8Kernel = void (*)(const uint8_t* w, uint64_t row_bytes, const uint8_t* codes8, const uint16_t* scales8,
                                  int64_t r0, int64_t r1, const QuantizedRow& a, int64_t nb, float* y,
                                  const float* bias);
extern const BlockRows8Kernel kAvx2Q4_0Rows8i;
extern const BlockRows8Kernel kAvx512Q4_0Rows8i;
// Q4_K and Q6_K on their interleaved copies (interleave_q4_k_rows8,
// interleave_q6_k_rows8, qgemv_rows8.hpp; the kernels in gguf_q4_k_rows8.inc,
// gguf_q6_k_rows8.inc): codes8 is that copy, scales8 unused (null).
extern const BlockRows8Kernel kAvx2Q4_KRows8i;
extern const BlockRows8Kernel kAvx2Q6_KRows8i;
extern const BlockRows8Kernel kAvx512Q4_KRows8i;  // the AVX2 source built for AVX-512 (gguf_gemv_rows_avx512.cpp)
extern const BlockRows8Kernel kAvx512Q6_KRows8i;
// Q4_1, Q5_0 and Q5_1 on their interleaved copies (interleave_legacy_rows8,
// qgemv_rows8.hpp; gguf_legacy_rows8.inc): codes8 is that copy, scales8
// unused (null).
extern const BlockRows8Kernel kAvx2Q4_1Rows8i;
extern const BlockRows8Kernel kAvx2Q5_0Rows8i;
extern const BlockRows8Kernel kAvx2Q5_1Rows8i;
extern const BlockRows8Kernel kAvx512Q4_1Rows8i;
extern const BlockRows8Kernel kAvx512Q5_0Rows8i;
extern const BlockRows8Kernel kAvx512Q5_1Rows8i;
// Q8_0 on its interleaved copy (interleave_q8_0_rows8; qgemv_rows8_int8_avx512.cpp).
extern const BlockRows8Kernel kAvx512Q8_0Rows8i;  // vpdpbusd (gguf_q6_k_rows8.inc, XQ_Q6K_VNNI)

// gguf_gemv_rows.cpp: the row-range kernel of ggml type `type` for ISA
// `isa`, or null when there is none (the caller then runs the type's per-row
// kernel); Q4_0 takes the eight-row kernel when `rows8`
// (selected_gemv_rows8(), qgemv_rows8.hpp).
BlockRowsKernel block_rows_kernel(Isa isa, uint32_t type, bool rows8);
// Whether prepared block weights use those kernels: XQUANT_CPU_BLOCK_ROWS
// = on (default) | off (the per-row kernels, for comparisons); another
// value throws.
bool selected_block_rows();
// The interleaved-copy kernel of type `type` on `isa` (Q4_0, Q4_1, Q5_0,
// Q5_1, Q4_K and Q6_K on AVX2 and AVX-512, Q8_0 on AVX-512), or null.
BlockRows8Kernel block_rows8_kernel(Isa isa, uint32_t type);

}  // namespace xquant::cpu
