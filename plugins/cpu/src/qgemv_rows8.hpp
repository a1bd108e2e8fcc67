// qgemv_rows8.hpp: the INT4 decode GEMV of qgemv_rows.hpp eight output rows
// at a time, on the stored `cpu.int-blocks.v1` layout (nothing repacked, no
// second copy of the codes).
//
// Why: the one-row kernels spend about ten vector instructions per row and
// 32-column block (unpack, dot, offset, convert, scale) and a horizontal sum
// per row, which at one thread keeps them below the read bandwidth.
// llama.cpp's repacked Q4_0 (ggml-cpu/repack.cpp, block_q4_0x8 and
// ggml_gemv_q4_0_8x8_q8_0) lays eight rows' blocks side by side at load time
// so that each int32 lane of a dot product belongs to one row. Here the same
// lane-per-row arrangement is made in registers from the row-major bytes: the
// 16 code bytes of one block of rows j and j + 4 are loaded into the two
// 128-bit halves of a vector, and a 4 x 4 transpose of 32-bit words (vpunpck*)
// leaves, in vector k, bytes 4k..4k+3 of each of the eight rows in lane j
// = row j. Their low nibbles are columns 4k..4k+3 and their high nibbles
// columns 16+4k..16+4k+3 (the block_q4_0 nibble order of qkernels.hpp), so a
// dot product against those four activation codes broadcast to every lane
// accumulates one block of all eight rows in eight int32 lanes. Per eight
// rows and block: 8 loads, 8 unpacks, 12 nibble operations, 8 four-byte dot
// products; the code offset (QuantizedActs::corr, the same for every row),
// the int-to-float conversion and the activation scale once for all eight;
// the weight scales once per group as one gather; no horizontal sums.
//
// AVX-512 VNNI: vpdpbusd on 256 bits. AVX2: vpmaddubsw (nibble x int8 pairs,
// at most 2 * 15 * 127 each), the eight of a block added as int16 (at most
// 16 * 15 * 127 = 30480 < 32767, exact), then one vpmaddwd by ones.
// Row counts that are not a multiple of 8 leave their last rows to the ISA's
// one-row kernel. INT8 weights: the AVX-512 VNNI kernels on their own
// interleaved copy below (qgemv_rows8_int8_avx512.cpp); AVX2 keeps the one-row ones.
#pragma once

#include "qgemv_rows.hpp"

#include <vector>

namespace xquant::cpu {

// qgemv_rows8_avx512.cpp, qgemv_rows8_avx2.cpp (the ISA conditions of
// qkernels.hpp); all expect QuantizedActs from the same ISA's one-row table
// (offset4 = 8). *_interleaved read PackedRows::codes8 / scales8 (the
// transpose kernel when those are null).
void gemv4_rows8_avx512(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);
void gemv4_rows8_avx2(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);
void gemv4_rows8_interleaved_avx512(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);
void gemv4_rows8_interleaved_avx2(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);

// INT8 codes on their interleaved copy (interleave_int8_rows8), AVX-512 VNNI
// only (qgemv_rows8_int8_avx512.cpp): the rows8i table's gemv8 (weight-only,
// q8 activations; the one-row kernel where w.codes8 is null), and W8A8's
// decode with one activation scale per token: for M activation rows (codes
// q + m * q_stride, their sums over group g at qsum[m * G + g]) and the
// whole groups of eight r8 in [g0, g1),
//   acc[m * acc_stride + 8 r8 + j] = sum_g s[g] * float(exact int32 dot of group g)
// -- dot8_i8's value for that pair (qkernels.hpp), bit for bit; each block
// of the copy is read once for up to four activation rows.
void gemv8_rows8_interleaved_avx512(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y);
void w8a8_rows8_interleaved_avx512(const uint8_t* codes8, const float* scales8, const int64_t* bb, int64_t G,
                                   const int8_t* q, int64_t q_stride, const int32_t* qsum, int64_t M, int64_t g0,
                                   int64_t g1, float* acc, int64_t acc_stride);

// How INT4 decode GEMVs run, from XQUANT_CPU_GEMV_ROWS8:
//   off: the one-row kernels of qgemv_rows.hpp;
//   transpose: eight rows at a time on the stored layout (the register
//     transpose above; GGUF Q4_0 too, gguf_gemv_rows.cpp);
//   interleaved: eight rows at a time on a copy made once at prepare time
//     with every eight rows' blocks side by side as the transpose would leave
//     them (llama.cpp's block_q4_0x8 idea: 128 bytes per block of eight rows,
//     their scales as eight floats per group), read as one aligned stream.
//     The stored cpu.int-blocks.v1 layout stays the prefill's and the file's.
// Unset: the default below. Another value throws.
enum class Rows8Mode { off, transpose, interleaved };
Rows8Mode selected_gemv_rows8();

// qgemv_rows8.cpp: the table the provider's decode uses for `isa`: the
// one-row table of gemv_rows_of(isa), its gemv4 replaced by the eight-row
// kernel of `mode` where the ISA has one (AVX2, AVX-512).
const GemvRowsKernels& gemv_rows_table(Isa isa, Rows8Mode mode);

// qgemv_rows8_pack.cpp: the interleaved copy of a packed INT4 weight's whole
// groups of eight rows (rows / 8 of them; the rest stay one-row):
//   codes[(r8 * nblk + b) * 128 + 32 k + 4 j + i] = byte 4k + i of block b of row 8 r8 + j
//   scales[(r8 * G + g) * 8 + j] = scale of group g of row 8 r8 + j
struct Rows8Copy {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};
Rows8Copy interleave_rows8(const uint8_t* codes, int64_t row_bytes, const float* scales, int64_t rows, int64_t G,
                           int64_t nblk);

// The same for a GGUF Q4_0 part (block_q4_0 rows of nb blocks, row_bytes =
// 18 nb): its qs bytes are cpu.int-blocks INT4 blocks (column i in the low,
// 16 + i in the high nibble, code + 8), so codes are laid out as above and
// scales[(r8 * nb + b) * 8 + j] is block b's f16 d of row 8 r8 + j, kept f16
// (the copy is the stored blocks' size: 18 bytes per 32 weights).
struct Q4_0Rows8Copy {
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scales;
};
Q4_0Rows8Copy interleave_q4_0_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb);
// Row j of group r8 of such a copy back as its stored blocks (nb * 18 bytes
// into out): the copy replaces the stored rows for every reader
// (gguf_blocks.cpp part_row).
void q4_0_row_from_rows8(const uint8_t* codes8, const uint16_t* scales8, int64_t r8, int64_t j, int64_t nb,
                         uint8_t* out);

// The same for INT8 codes (cpu.int-blocks rows of one signed byte per code,
// 32 bytes a block): 256 bytes per block of eight rows, word k = 0..7 holding
// columns 4k..4k+3, each code moved to unsigned (+ 128, XOR 0x80: the
// operand vpdpbusd takes unsigned, so decode needs no conversion):
//   codes[(r8 * nblk + b) * 256 + 32 k + 4 j + i] = (byte 4k + i of block b of row 8 r8 + j) ^ 0x80
//   scales as interleave_rows8.
Rows8Copy interleave_int8_rows8(const uint8_t* codes, int64_t row_bytes, const float* scales, int64_t rows, int64_t G,
                                int64_t nblk);
// Row j of group r8 of such a copy back as its stored codes (nblk * 32 bytes into out).
void int8_row_from_rows8(const uint8_t* codes8, int64_t nblk, int64_t r8, int64_t j, uint8_t* out);

// The same for a GGUF Q8_0 part (block_q8_0: f16 d, int8 qs[32]; 34 bytes
// per 32 columns): codes as interleave_int8_rows8's (qs moved to unsigned),
// scales[(r8 * nb + b) * 8 + j] block b's f16 d of row 8 r8 + j, kept f16
// (the copy is the stored blocks' size), and row j of group r8 back as its
// stored blocks (q8_0_row_from_rows8, nb * 34 bytes into out): the copy
// replaces the stored rows for every reader (gguf_blocks.cpp part_row).
Q4_0Rows8Copy interleave_q8_0_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb);
void q8_0_row_from_rows8(const uint8_t* codes8, const uint16_t* scales8, int64_t r8, int64_t j, int64_t nb,
                         uint8_t* out);

// The same for a GGUF Q4_K part (block_q4_K rows of nb blocks of 256
// columns, row_bytes = 144 nb; llama.cpp's block_q4_Kx8 idea, repack.cpp):
// block b of the eight rows 8 r8 .. 8 r8 + 7 becomes kQ4_KRows8Bytes bytes at
// (r8 * nb + b) * kQ4_KRows8Bytes, with its 6-bit scales and mins unpacked
// (q4_k_scales_mins) so decode does no scalar work per row:
//   [0, 16)     d of rows j = 0..7 (f16, as stored)
//   [16, 32)    dmin of rows 0..7 (f16)
//   [32, 96)    scale of sub-block s of row j at 32 + 8 s + j (uint8, < 64)
//   [96, 160)   min of sub-block s of row j at 96 + 16 (j % 4) + 8 (j / 4) + s
//               (rows j and j + 4 side by side: one vpmaddwd pairs them)
//   [160, 1184) the nibbles: byte 32 c + 4 k + i of row j's qs at
//               160 + 32 (8 c + k) + 4 j + i (c: 64-column chunk, k: 4-byte
//               word; the low nibbles are columns 64 c + 4 k + i, the high
//               ones 64 c + 32 + 4 k + i, ggml-common.h block_q4_K).
// 1184 bytes per 8 x 256 weights (the stored blocks: 1152).
inline constexpr int64_t kQ4_KRows8Bytes = 1184;
std::vector<uint8_t> interleave_q4_k_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb);

// The same for a GGUF Q6_K part (block_q6_K: ql[128], qh[64], int8
// scales[16], f16 d; 210 bytes per 256 columns): block b of rows
// 8 r8 .. 8 r8 + 7 at (r8 * nb + b) * kQ6_KRows8Bytes, the stored size:
//   [0, 16)       d of rows 0..7 (f16)
//   [16, 144)     scale of 16-column sub-block s of row j at 16 + 8 s + j (int8)
//   [144, 1680)   the codes in the order the kernel reads them: for half
//                 h = 0, 1 and word slot k = 0..7 (columns 4k .. 4k + 3 of
//                 each of the half's four 32-column runs) three 32-byte words
//                 at 144 + 96 (8 h + k): part 0 = ql bytes 64 h + 4 k + i
//                 (runs 0 and 2), part 1 = ql bytes 64 h + 32 + 4 k + i
//                 (runs 1 and 3), part 2 = qh bytes 32 h + 4 k + i (all four
//                 runs), row j's 4 bytes at 4 j of each word
// (gguf_q6_k_rows8.inc assembles ggml's codes from them).
inline constexpr int64_t kQ6_KRows8Bytes = 1680;
std::vector<uint8_t> interleave_q6_k_rows8(const uint8_t* blocks, uint64_t row_bytes, int64_t rows, int64_t nb);

// The same for GGUF Q4_1, Q5_0 and Q5_1 parts, ggml's legacy blocks other
// than Q4_0 (ggml-common.h: block_q4_1 {f16 d, m; qs[16]}, block_q5_0 {f16
// d; qh[4]; qs[16]}, block_q5_1 {f16 d, m; qh[4]; qs[16]}; a weight is
// d * c + m, or d * (c - 16) for Q5_0, c its nibble plus 16 times its qh
// bit). Block b of rows 8 r8 .. 8 r8 + 7 sits at (r8 * nb + b) *
// block8_bytes, eight times the stored block (the copy is the stored
// size), its fields in this order, each where the type has it:
//   d        16 bytes: f16 d of row j at 2 j
//   m        16 bytes: f16 m of row j at 2 j (Q4_1, Q5_1)
//   masks    32 bytes, eight uint32 (Q5_0, Q5_1): bit 4 j + i of mask 2 k + h
//            is the qh bit of column 16 h + 4 k + i of row j. The kernel's
//            nibble vector 2 k + h holds that column's code in byte 4 j + i,
//            so each bit sits over its byte (a byte mask on AVX-512, ggml's
//            bytes_from_bits_32 on AVX2) and the fifth bits cost no shuffle
//   nibbles  128 bytes, interleave_q4_0_rows8's codes: byte 4 k + i of row
//            j's qs at 32 k + 4 j + i (column 4 k + i low, 16 + 4 k + i high)
struct LegacyRows8Layout {
  int64_t stored_bytes, stored_qh, stored_qs;  // the ggml block: size, where qh and qs start
  int64_t block8_bytes, m, masks, nibbles;     // the copy block: size, where its fields start
  bool has_min, has_masks;
};
// ggml type ids 3 (Q4_1), 6 (Q5_0) and 7 (Q5_1); any other id is Q5_1's.
constexpr LegacyRows8Layout legacy_rows8_layout(uint32_t type) {
  if (type == 3) return {20, 0, 4, 160, 16, 0, 32, true, false};
  if (type == 6) return {22, 2, 6, 176, 0, 16, 48, false, true};
  return {24, 4, 8, 192, 16, 32, 64, true, true};
}
std::vector<uint8_t> interleave_legacy_rows8(uint32_t type, const uint8_t* blocks, uint64_t row_bytes, int64_t rows,
                                             int64_t nb);

// Row j (0..7) of group r8 of such a copy back as ggml's stored blocks (nb of
// them, byte for byte, into out): the readers other than decode (prefill's
// dequantization, DEQUANTIZE, GET_ROWS, the M = 2..17 GEMV) take the copy too,
// so the stored blocks need not stay resident (gguf_blocks.cpp).
void q4_k_row_from_rows8(const uint8_t* copy, int64_t r8, int64_t j, int64_t nb, uint8_t* out);
void q6_k_row_from_rows8(const uint8_t* copy, int64_t r8, int64_t j, int64_t nb, uint8_t* out);
void legacy_row_from_rows8(uint32_t type, const uint8_t* copy, int64_t r8, int64_t j, int64_t nb, uint8_t* out);

}  // namespace xquant::cpu
