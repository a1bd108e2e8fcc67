// gguf_blocks.hpp: GGUF (ggml) block-quantized weights executed in their own
// layout by the `cpu` provider, as llama.cpp does: the activation row is
// quantized once per token to int8 (one float scale per 32 columns for the
// 32-element block types, per 256 columns plus 16-column sums for the
// K-quants: ggml's block_q8_0 / block_q8_K roles), and each weight row's
// dot product is integer per block, scaled by the weight's and the
// activation's block scales (ggml-cpu/arch/x86/quants.c,
// ggml_vec_dot_q4_0_q8_0, ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q4_K_q8_K,
// ggml_vec_dot_q6_K_q8_K).
//
// Weight bytes are ggml's block_* structs (ggml-common.h) exactly as the file
// stores them; nothing is repacked. Q4_1, Q5_0 and Q5_1 take the form of
// ggml_vec_dot_q4_1_q8_1 / q5_0_q8_0 / q5_1_q8_1 (the block min or the 5-bit
// offset times the activation block's code sum); Q5_K is Q4_K with a fifth
// bit from qh (ggml_vec_dot_q5_K_q8_K). Those are the eight block types the
// loader decodes; DEQUANTIZE and GET_ROWS use its decoders
// (plugins/gguf/gguf_types.cpp), compiled into the provider.
#pragma once

#include <cstdint>

namespace xquant::cpu {

// An activation row quantized for the block kernels; arrays sized by the
// caller for k columns (k a multiple of 256 for the K-quant parts).
struct QuantizedRow {
  const int8_t* q;       // [k] int8 codes, |q| <= 127
  const float* d32;      // [k / 32] scale of each 32-column block (x ~ d32 * q)
  const float* d256;     // [k / 256] scale of each 256-column block (K-quants), or null
  const int8_t* q256;    // [k] codes for the K-quants (scale d256), or null
  const int16_t* bsum16; // [k / 16] sums of q256 over 16 columns, or null
  const int16_t* sum32;  // [k / 32] sums of q over each 32-column block (the min / offset terms)
};

// Quantizes x[0..k) (k a multiple of 32): q/d32 always; q256/d256/bsum16 when
// k is a multiple of 256 and those pointers are not null. Scales are
// max|x| / 127 per block (1 for an all-zero block), codes round-to-nearest,
// so |x - d * q| <= d / 2 for every element.
void quantize_row_blocks(const float* x, int64_t k, int8_t* q, float* d32, int16_t* sum32, int8_t* q256,
                         float* d256, int16_t* bsum16);

// One weight row (nb blocks of its type) dotted with one quantized row.
struct BlockKernels {
  const char* name;
  float (*q4_0)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q8_0)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q4_k)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q6_k)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q4_1)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q5_0)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q5_1)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
  float (*q5_k)(const uint8_t* w, const QuantizedRow& a, int64_t nb);
};

// gguf_blocks_scalar.cpp, gguf_blocks_avx2.cpp, gguf_blocks_avx512.cpp (the
// same ISA conditions as the packed-weight tables of qkernels.hpp).
extern const BlockKernels kScalarBlockKernels;
extern const BlockKernels kAvx2BlockKernels;
extern const BlockKernels kAvx512BlockKernels;

// ggml type ids with an integer kernel above: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
bool has_block_kernel(uint32_t ggml_type);
// The kernel for that type from table t (null for the others).
float (*block_kernel(const BlockKernels& t, uint32_t ggml_type))(const uint8_t*, const QuantizedRow&, int64_t);

}  // namespace xquant::cpu
