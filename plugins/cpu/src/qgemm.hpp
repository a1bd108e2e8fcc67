// qgemm.hpp: the `cpu` provider's prefill GEMMs on packed quantized weights
// (many activation rows), driven over the host pool in fixed-shape pieces, so
// results do not depend on the thread count (qgemm.cpp).
#pragma once

#include "cpu.hpp"

#include <cstdint>
#include <functional>

namespace xquant::cpu {

// Weight-only prefill: y[M, N] = x[M, Kp] . W^T, x in the weight's padded
// column order. Each piece of kSgemmBlockCols weight rows is dequantized
// into a buffer of the calling pool thread and multiplied at once by one
// single-threaded OpenBLAS SGEMM while it is still in cache (the pieces of
// sgemm_nt_blocked, so the bits are those of dequantizing the whole weight
// and calling it). No bias.
void qgemm_dequant_sgemm(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y);

// W8A8 prefill through the table's panel_i8 (the caller checks it is not
// null): qx [M, Kp] int8 activations, qsum [M, G] their per-group sums.
// Calls finish(n0, nr, m0, mt, acc) for each piece of nr weight rows x mt
// activation rows, acc[j * kPanelRows + i] being what dot*_i8 returns for
// weight row n0 + i and activation row m0 + j (bit for bit).
using PanelFinish = std::function<void(int64_t n0, int64_t nr, int64_t m0, int64_t mt, const float* acc)>;
void qgemm_w8a8_panels(const Host& host, const xq_qweight& w, const int8_t* qx, const int32_t* qsum, int64_t M,
                       const PanelFinish& finish);

}  // namespace xquant::cpu
