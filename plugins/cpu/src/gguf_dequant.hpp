// gguf_dequant.hpp: GGUF (ggml) blocks dequantized to F32 with vector
// instructions, for the `cpu` provider's prefill (a tile of weight rows
// dequantized, then SGEMM'd while in cache: qgemm.hpp's
// sgemm_dequantized_pieces), DEQUANTIZE and GET_ROWS on foreign-block weights.
//
// Each decoder writes exactly the floats of the loader's scalar decoder
// (plugins/gguf/gguf_types.cpp, gguf::dequantize_row, read against ggml's
// dequantize_row_* in ggml-quants.c): the same float expression per element,
// evaluated in the same order (scale * code, then + min or - min), and the
// library is built with -ffp-contract=off so no mul + add becomes an FMA.
// The integer codes are rebuilt in vector registers (nibbles, the fifth or
// the two high bits) and only the final int -> float, multiply and add are
// float work. The scalar path is the loader's decoder itself.
#pragma once

#include "qkernels.hpp"

#include <cstdint>

namespace xquant::cpu {

// Decodes nblocks consecutive blocks of one type at src into dst
// (nblocks * the type's block size floats).
using GgufDequantBlocks = void (*)(const uint8_t* src, float* dst, int64_t nblocks);

struct GgufDequantKernels {
  const char* name;
  GgufDequantBlocks q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k;
};

// gguf_dequant_avx2.cpp (avx2 + f16c), gguf_dequant_avx512.cpp (the
// AVX-512 ISA of qkernels.hpp): 8 and 16 floats per store.
extern const GgufDequantKernels kAvx2GgufDequant;
extern const GgufDequantKernels kAvx512GgufDequant;

// The table of a vector ISA; null for Isa::scalar (use gguf::dequantize_row).
const GgufDequantKernels* gguf_dequant_kernels_of(Isa isa);
// The decoder of ggml type id `type` in table t; null for the types it does
// not cover (anything but Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
GgufDequantBlocks gguf_dequant_blocks(const GgufDequantKernels& t, uint32_t type);

}  // namespace xquant::cpu
