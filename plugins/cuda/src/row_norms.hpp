// row_norms.hpp: RMS_NORM and ADD_RMS_NORM with 16-byte accesses (row_norms.cu).
//
// decoder_ops.cu's rms_norm_kernel and fused_ops.cu's add_rms_norm_kernel
// read one element per thread per step through a run-time dtype switch and
// re-read the row for the second pass; at batch 1 each is one CTA on one
// row of 4096, so their time is latency: serial dependent loads. Here each
// thread holds its float4 chunks of the row in registers between the sum of
// squares and the scaling, and the residual add, the sum and the output each
// take one 16-byte (or 8-byte BF16) access per chunk. The sum runs in
// another order than the scalar kernels' (per-thread float4 chunks), so
// outputs differ from theirs by float rounding; RMS_NORM and ADD_RMS_NORM
// share the order here, so a layer's fused and unfused norms agree.
#pragma once

#include "kernels.hpp"

namespace xqcuda {

// Whether the 16-byte kernels take this row norm: x and w F32, the addend r
// (null for RMS_NORM) and y F32 or BF16, D a multiple of 4 up to 16384,
// every pointer 16-byte aligned (8-byte for BF16 rows). XQUANT_VECTOR_NORMS=0
// turns them off (the scalar kernels run).
bool row_norm_vec_fits(const void* x, DType xt, const void* r, DType rt, const void* w, DType wt, int64_t D,
                       const void* y, DType yt);

// y[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w; with r, first
// x[m, :] += r[m, :] in place (the residual add), and the norm of the sum.
cudaError_t row_norm_vec(float* x, const void* r, DType rt, const float* w, int64_t M, int64_t D, float eps, void* y,
                         DType yt, cudaStream_t stream);

}  // namespace xqcuda
