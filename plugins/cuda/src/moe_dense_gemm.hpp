// moe_dense_gemm.hpp: the dense mixture-of-experts grouped GEMM's launcher
// (moe_dense_gemm.cu), used by the provider's moe_qmatmul (moe_provider.cpp).
#pragma once

#include "kernels.hpp"

#include <cuda_runtime.h>

#include <cstdint>

namespace xqcuda {

// The dense (BF16 when !is_f16, else F16) grouped GEMM over sorted slots
// (moe_dense_gemm.cu): token blocks of mt * 16 sorted rows (mt 1, 2 or 4),
// a device table of per-expert [N, K] row-major weights, activation row of
// slot s = x[s / x_div] ([rows, K], K % 8 == 0, 16-byte aligned), output
// row s of y [n_slots, N] in y_type.
int moe_dense_token_tiles(int64_t slots_per_expert);
cudaError_t moe_dense_gemm(int mt, const void* const* w_table, bool is_f16, const void* x, int64_t x_div, int64_t K,
                           int64_t N, const int32_t* sorted, const int32_t* block_expert, int64_t token_blocks,
                           int64_t n_slots, void* y, DType y_type, cudaStream_t stream);

}  // namespace xqcuda
