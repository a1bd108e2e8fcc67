// block_encode.hpp: ggml block encoders for the GGUF writer.
//
// Two kinds, both one row (ne[0] elements, a multiple of the block size) at
// a time:
//  - from canonical codes: a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block whose grid holds
//    our integer codes as they are (symmetric codes c: q = c + 2^(b-1);
//    asymmetric s*(c - z) = d*q + m with d = s, m = -s*(z + 2^(b-1))). The
//    block's f16 d and m are our scale rounded to f16, so the result is exact
//    when the scale (and s*z) are representable in f16.
//  - from floats: our own quantizers for every type, following the ggml
//    reference quantizers (ggml/src/ggml-quants.c: quantize_row_q4_0_ref ...
//    quantize_row_q6_K_ref, make_qkx2_quants for the K-quant sub-block fits).
// Kept free of the plugin machinery so tests compile it directly.
#pragma once

#include <cstdint>

namespace xquant::gguf {

// True for the types encode_floats() handles.
bool can_encode(uint32_t type);

// Quantizes n floats (a multiple of the type's block size) into blocks.
void encode_floats(uint32_t type, const float* x, int64_t n, uint8_t* out);

// Encodes one row of canonical codes as blocks of 32 (type Q4_0, Q4_1,
// Q5_0, Q5_1 or Q8_0). `scales` / `zeros` hold one value per 32 columns;
// `zeros` is nullptr for symmetric codes. The caller checks that the codes
// fit the type's range (4-bit types: [-8, 7], 5-bit: [-16, 15], Q8_0: int8).
void encode_codes(uint32_t type, const int8_t* codes, const float* scales, const int8_t* zeros, int64_t n,
                  uint8_t* out);

}  // namespace xquant::gguf
