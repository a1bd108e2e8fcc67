// fused_ops.hpp: launchers (fused_ops.cu) that cut the op count of a decode
// step: the engine runs q|k|v and gate|up as one GEMM each, then reads their
// column slices through row-strided CONVERT and SWIGLU; the residual add is
// fused into the next RMSNorm (XQ_OP_ADD_RMS_NORM); greedy sampling takes a
// per-row argmax on the device (XQ_OP_ARGMAX). The xq_op checks live with the
// other decoder ops (decoder_ops_check.cpp). Launchers enqueue on `stream`,
// return the launch's cudaError_t and never synchronize.
#pragma once

#include "kernels.hpp"

namespace xqcuda {

// dst[r, c] (contiguous [rows, cols]) = src[r * ld + c].
cudaError_t convert_rows(const void* src, DType st, int64_t rows, int64_t cols, int64_t ld, void* dst, DType dt,
                         cudaStream_t stream);

// y[r, c] (contiguous) = silu(a[r * lda + c]) * b[r * ldb + c].
cudaError_t swiglu_rows(const void* a, DType at, int64_t lda, const void* b, DType bt, int64_t ldb, int64_t rows,
                        int64_t cols, void* y, DType yt, cudaStream_t stream);

// x[m, :] += r[m, :] (stored in x's type), then y[m, :] = x[m, :] /
// sqrt(mean(x[m, :]^2) + eps) * w, summed in decoder_ops.cu's rms_norm order.
cudaError_t add_rms_norm(void* x, DType xt, const void* r, DType rt, const void* w, DType wt, int64_t M, int64_t D,
                         float eps, void* y, DType yt, cudaStream_t stream);

// ids[m] = the index of the largest x[m, :] (lowest on ties; NaN never wins).
cudaError_t argmax_rows(const void* x, DType xt, int64_t M, int64_t N, int32_t* ids, cudaStream_t stream);

}  // namespace xqcuda
