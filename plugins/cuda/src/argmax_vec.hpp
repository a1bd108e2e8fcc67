// argmax_vec.hpp: ARGMAX over F32 rows with 16-byte loads, four in flight
// per thread (argmax_vec.cu).
//
// fused_ops.cu's argmax_rows_kernel walks a row one float per thread per
// step: for a 128,256-entry vocabulary that is 125 dependent steps of 1024
// threads in the one CTA a batch-1 decode step has, each waiting on its
// load. Here each step issues four float4 loads (16 logits) per thread
// before comparing them, and a row is split over up to 64 CTAs whose last
// merges their winners (argmax_vec.cu). The order the
// candidates are compared in does not matter: the winner is the largest
// value with the lowest index (NaN never wins), a total order, so the ids
// are the scalar kernel's exactly.
#pragma once

#include "kernels.hpp"

namespace xqcuda {

// F32 rows whose length is a multiple of 4, 16-byte aligned;
// XQUANT_VECTOR_ARGMAX=0 turns it off (the scalar kernel runs).
bool argmax_vec_fits(const void* x, DType xt, int64_t N);
cudaError_t argmax_vec(const float* x, int64_t M, int64_t N, int32_t* ids, cudaStream_t stream);

}  // namespace xqcuda
