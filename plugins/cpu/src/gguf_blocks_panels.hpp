// gguf_blocks_panels.hpp: prefill of GGUF Q4_0 / Q8_0 / Q4_K / Q6_K block
// weights through the q8 panel kernels of the packed weights
// (qgemm_kernels.hpp panel_q8, panel_q6k), gguf_blocks_panels.cpp.
#pragma once

#include "gguf_blocks_weight.hpp"
#include "qgemm_kernels.hpp"

#include <xquant/sdk/host.hpp>

#include <cstdint>

namespace xquant::cpu {

// The table whose panels this weight's prefill takes, or null: a table with
// panel_q8, every part Q4_0 or every part Q4_K (XQUANT_CPU_PREFILL=int8, or
// auto where the table takes INT4 panels by default) or every part Q8_0 (int8
// only); a table with panel_q6k, every part Q6_K (int8, or auto where the
// table's q6k_panels_by_default is set); a panel's rows share one block type.
const QGemmKernels* blocks_prefill_panels(const BlockWeight& w, PrefillMode mode, Isa isa);

// y[M, N] (+ bias) from activation rows quantized as for the block kernels
// (q [M, K] int8, d32 [M, K / 32] block scales, sum32 [M, K / 32] block
// code sums): per block the exact integer dot of the stored codes (Q4_0's
// nibbles less 8) and the q8 row, times the block's f16 scale and the row's
// d32, summed in block order (llama.cpp's ggml_vec_dot_q4_0_q8_0 /
// q8_0_q8_0 per pair, up to float summation order); Q4_K per 32-column
// sub-block d * sc * dot - dmin * m * (sum of the activation codes), times d32;
// Q6_K per 16-column sub-block sc * (dot of q - 32), summed over the block,
// times d and d32.
void qmatmul_blocks_panels(const sdk::Host& host, const BlockWeight& w, const QGemmKernels& k, const int8_t* q,
                           const float* d32, const int16_t* sum32, int64_t M, float* y, const float* bias);

}  // namespace xquant::cpu
