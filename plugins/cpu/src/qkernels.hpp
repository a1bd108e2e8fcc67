// qkernels.hpp: the inner products of the `cpu` provider's packed quantized
// GEMV, one table per instruction set (scalar reference, AVX2, AVX-512 VNNI),
// chosen at run time from what the CPU reports.
//
// Packed layout (prepare_qweight in qweight.cpp): each row's columns, in the
// weight's permuted order, are cut into groups and every group is padded with
// zero codes to whole blocks of 32 columns, so a group is a run of blocks:
//   INT4 (bits 2..4): 16 bytes per block; byte i holds column i in its low
//     nibble and column 16 + i in its high nibble, as the unsigned value
//     code + 8 (0..15). This is llama.cpp's block_q4_0 nibble order
//     (ggml-common.h), which lets one 16-byte load feed 32 lanes.
//   INT8 (bits 5..8): 32 signed bytes per block, the codes themselves.
// The activations handed to a kernel are in the same padded column order
// (zeros in the padding), so padding never needs a tail loop.
//
// Every function computes one packed row's dot product with one activation
// row, group by group: bb[0..G] are the groups' block ranges (absolute block
// indices into w and x), s[g] the group's weight scale, and the result is
//   sum_g s[g] * (sum over the group's columns of v * x)
// where v is the unsigned nibble u = code + 8 (dot4_*) or the signed code c
// (dot8_*). The caller subtracts sum_g s[g] * (8 + zero_g or zero_g) * sum(x
// of group g), so zero points and the nibble offset cost nothing per column.
//   *_f32 : x is float, float accumulation (the W*A16 path);
//   *_i8  : x is int8 with one scale for the row, applied by the caller (W8A8
//           per token); each group's dot product is exact int32;
//   *_q8  : x is int8 with one float scale per block (sa[b]), each block's
//           dot exact int32 then scaled by s[g] * sa[b], as llama.cpp's
//           ggml_vec_dot_q4_0_q8_0 (ggml-cpu/arch/x86/quants.c) does.
// Keeping the group loop inside the kernel leaves one horizontal sum and one
// indirect call per row, which matters for small groups (g32: one block per
// group).
//
// Prefill tiles (tile4_q8, tile8_q8): kTileRows packed weight rows (row i at
// w + i * ldw bytes, its scales at s + i * G) against kTileCols activation
// rows of the *_q8 kind (row j at a + j * lda, its block scales at
// sa + j * ldsa); out[i * kTileCols + j] is exactly what dot*_q8 returns for
// that pair (the same operations in the same order: tests pin it bit for
// bit), but each weight block is unpacked and each activation block loaded
// once per tile instead of once per pair, as the tiles of llamafile's
// tinyBLAS (ggml-cpu/llamafile/sgemm.cpp, tinyBLAS_Q0_AVX) do.
#pragma once

#include <cstdint>

namespace xquant::cpu {

inline constexpr int64_t kBlock = 32;  // columns per block
inline constexpr int64_t kTileRows = 4;  // weight rows per prefill tile
inline constexpr int64_t kTileCols = 2;  // activation rows per prefill tile

struct QKernels {
  const char* name;
  float (*dot4_f32)(const uint8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s);
  float (*dot8_f32)(const int8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s);
  float (*dot4_i8)(const uint8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s);
  float (*dot8_i8)(const int8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s);
  float (*dot4_q8)(const uint8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s);
  float (*dot8_q8)(const int8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s);
  void (*tile4_q8)(const uint8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                   int64_t ldsa, const int64_t* bb, int64_t G, float* out);
  void (*tile8_q8)(const int8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                   int64_t ldsa, const int64_t* bb, int64_t G, float* out);
  // dot8_i8 for activation codes within [-127, 127] (dynamic scales; a
  // static scale may give -128): the same result, faster where the ISA has
  // a form that needs it (AVX2's sign trick); dot8_i8 itself elsewhere.
  float (*dot8_i8_a127)(const int8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s);
};

// A tile computed pair by pair with a table's own dot*_q8 (the scalar
// reference's tiles, and any table without a tile of its own).
template <float (*Dot)(const uint8_t*, const int8_t*, const float*, const int64_t*, int64_t, const float*)>
void tile4_by_pairs(const uint8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                    int64_t ldsa, const int64_t* bb, int64_t G, float* out) {
  for (int64_t i = 0; i < kTileRows; ++i)
    for (int64_t j = 0; j < kTileCols; ++j)
      out[i * kTileCols + j] = Dot(w + i * ldw, a + j * lda, sa + j * ldsa, bb, G, s + i * G);
}
template <float (*Dot)(const int8_t*, const int8_t*, const float*, const int64_t*, int64_t, const float*)>
void tile8_by_pairs(const int8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                    int64_t ldsa, const int64_t* bb, int64_t G, float* out) {
  for (int64_t i = 0; i < kTileRows; ++i)
    for (int64_t j = 0; j < kTileCols; ++j)
      out[i * kTileCols + j] = Dot(w + i * ldw, a + j * lda, sa + j * ldsa, bb, G, s + i * G);
}

enum class Isa { scalar, avx2, avx512 };

// The kernel tables (qkernels_scalar.cpp, qkernels_avx2.cpp, qkernels_avx512.cpp).
// The AVX2 table needs avx2 + fma; the AVX-512 one avx512f/bw/vl + avx512vnni.
extern const QKernels kScalarKernels;
extern const QKernels kAvx2Kernels;
extern const QKernels kAvx512Kernels;

// qkernels_dispatch.cpp.
const char* isa_name(Isa isa);
bool cpu_has(Isa isa);  // the running CPU can execute this table
const QKernels& kernels_of(Isa isa);
// The ISA the provider uses: the best the CPU has, or the one the
// environment variable XQUANT_CPU_ISA (scalar | avx2 | avx512) forces; a
// forced ISA the CPU lacks (or an unknown name) throws an Error naming it.
Isa selected_isa();

// How weight-only (W*A16) decode GEMVs take their activations, from
// XQUANT_CPU_GEMV: f32 (float FMA, exact up to float rounding), q8 (the
// activation row quantized to int8 once per call, one scale per 32-column
// block, integer dot products), or unset / auto: q8 for INT4 weights (1.2-1.5x
// the f32 GEMV's decode speed on SmolLM2 W4A16, docs/engine.md), f32 for INT8
// ones (no gain measured there). An unknown value throws.
enum class GemvMode { automatic, f32, q8 };
GemvMode selected_gemv_mode();
// Weight-only calls with at most this many activation rows take the fused
// GEMV; more rows dequantize a tile and call SGEMM. From XQUANT_CPU_GEMV_ROWS
// (default 4; a large value runs prefill, and so perplexity, through the
// decode kernels). A value that is not a positive integer throws.
int64_t selected_gemv_max_rows();
// How weight-only calls with more rows than that (prefill) run, from
// XQUANT_CPU_PREFILL: sgemm (dequantize a tile of weight rows, then OpenBLAS
// SGEMM, float activations), int8 (each activation row quantized once to
// int8 per 32-column block, as the q8 GEMV, then the VNNI panels of
// qgemm_kernels.hpp where the table has them, else the integer tiles
// above), or unset / auto: int8 for a weight whose decode takes q8
// activations on an ISA with the panels (AVX-512 VNNI), so prompt and
// generated tokens see the same numerics; sgemm elsewhere (docs/engine.md,
// "Integer prefill on AVX-512", measured both). GGUF blocks: Q4_0-only
// weights take the same panels under auto on AVX-512 or int8, Q8_0-only ones
// under int8 (gguf_blocks_panels.hpp); int8 sends the other types through
// their integer row kernels. An unknown value throws.
enum class PrefillMode { automatic, sgemm, int8 };
PrefillMode selected_prefill_mode();
// How W8A8 calls with many activation rows (prefill) multiply, from
// XQUANT_CPU_W8A8_PREFILL: integer (the exact int32 dot per group: panels
// or pair by pair), sgemm (the int8 images of the activations and the
// weight's dequantized rows multiplied by OpenBLAS SGEMM: the same
// quantization, float accumulation), or unset / auto: sgemm for INT8 codes
// on an ISA whose integer panels do not beat FMA on them (AVX2:
// qgemm_panel_avx2.cpp says why), integer elsewhere. An unknown value throws.
enum class W8A8PrefillMode { automatic, integer, sgemm };
W8A8PrefillMode selected_w8a8_prefill_mode();

}  // namespace xquant::cpu
