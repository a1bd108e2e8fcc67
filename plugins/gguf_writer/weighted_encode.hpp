// weighted_encode.hpp: importance-weighted ggml block encoders, the
// quantization llama.cpp's llama-quantize runs with an importance matrix
// (`--imatrix`).
//
// `importance` holds one value per column of the row (llama.cpp's imatrix:
// the mean of x_c^2 over the calibration tokens reaching that input column);
// each block's scale search minimises sum_c w_c (x_c - q_c)^2 with w_c built
// from it exactly as ggml/src/ggml-quants.c quantize_row_q4_0_impl ...
// quantize_row_q6_K_impl do (make_qx_quants, make_qkx3_quants,
// make_qp_quants), written anew here. Q8_0 takes no importance in ggml
// (quantize_q8_0 ignores quant_weights) and none here.
// Kept free of the plugin machinery so tests compile it directly.
#pragma once

#include <cstdint>

namespace xquant::gguf {

// True for the types whose search uses the importance.
bool uses_importance(uint32_t type);

// Quantizes one row of n floats (a multiple of the type's block size) into
// blocks of `type` (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K; Q8_0 is
// encoded as without importance), weighting column c's error by
// importance[c] (n values, finite and >= 0).
void encode_row_weighted(uint32_t type, const float* x, int64_t n, const float* importance, uint8_t* out);

}  // namespace xquant::gguf
