// vector_elementwise.hpp: 16-byte-wide paths (vector_elementwise.cu) of the
// row-strided elementwise ops that a prefill step runs over every row:
// SWIGLU over the gate|up GEMM output and CONVERT around the GEMMs. Each
// thread moves 8 elements with 16-byte loads and stores (two for F32)
// instead of one element per thread; the scalar kernels (fused_ops.cu,
// w8a8.cu) stay for what these cannot take. Launchers enqueue on `stream`
// and never synchronize.
#pragma once

#include "kernels.hpp"

namespace xqcuda {

// Whether rows of `cols` elements at row pitches lda/ldb (elements) of
// buffers a, b and the contiguous output y can go 8 elements at a time:
// F32/F16/BF16 types, cols and pitches multiples of 8, 16-byte aligned
// buffers. Pass b = nullptr, ldb = 0 for a one-input op. False for
// everything under XQUANT_CUDA_VECTOR_ELEMENTWISE=0.
bool vector_rows_apply(const void* a, DType at, int64_t lda, const void* b, DType bt, int64_t ldb, int64_t cols,
                       const void* y, DType yt);

// y[r, c] (contiguous) = silu(a[r * lda + c]) * b[r * ldb + c]; requires
// vector_rows_apply and at == bt.
cudaError_t swiglu_rows_vec(const void* a, DType at, int64_t lda, const void* b, int64_t ldb, int64_t rows,
                            int64_t cols, void* y, DType yt, cudaStream_t stream);

// y[r, c] (contiguous) = src[r * ld + c] in y's type; requires vector_rows_apply.
cudaError_t convert_rows_vec(const void* src, DType st, int64_t ld, int64_t rows, int64_t cols, void* y, DType yt,
                             cudaStream_t stream);

}  // namespace xqcuda
