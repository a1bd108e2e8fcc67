// cutlass_w8a8.hpp: the W8A8 GEMMs with the scaling fused into the epilogue
// (CUTLASS 3.x, sm_90a only): y[m][n] = acc[m][n] * s_x[m] * s_w[n] (+ bias[n])
// straight into BF16 or F16, acc the s32 (INT8) or f32 (FP8 E4M3) sum of
// x[m][:] . w[n][:]. No INT32 accumulator goes through memory (the cuBLASLt
// path, cublaslt.cpp + scale_epilogue, writes it and reads it back).
//
// Built only when CMake finds the CUTLASS headers (plugins/cuda/CMakeLists.txt
// defines XQUANT_CUDA_CUTLASS on xquant_cuda_core then); plain C++ here, so
// provider.cpp includes it without CUTLASS.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels.hpp"

namespace xqcuda {

// One scaled GEMM. x [M][K] and w [N][K] row-major (K contiguous), of the
// same type (I8 or F8E4M3); y [M][N] row-major of BF16 or F16. A null sx / sw
// is the per-tensor case: the scalar sx_const / sw_const is broadcast. bias
// [N] of y's type, or null.
struct ScaledMM {
  DType ab = DType::I8;
  DType y_type = DType::BF16;
  int64_t M = 0, N = 0, K = 0;
  const void* x = nullptr;
  const void* w = nullptr;
  void* y = nullptr;
  const float* sx = nullptr;
  float sx_const = 1.f;
  const float* sw = nullptr;
  float sw_const = 1.f;
  const void* bias = nullptr;
};

// Whether the CUTLASS kernels take this problem: types (I8 or F8E4M3 in, BF16
// or F16 out), K and N multiples of 16 (TMA needs 16-byte row pitches),
// 16-byte aligned x, w and y, element-aligned scales and bias.
bool cutlass_scaled_mm_fits(const ScaledMM& p);

// The tile configuration the launcher picks for M (for logs and the bench):
// "64x64x128 c1x8", "64x128x128 c2x1", "128x128x128 c2x1".
const char* cutlass_scaled_mm_config(DType ab, int64_t M);

// Enqueue the GEMM on `stream`. `workspace` of `workspace_bytes` (the
// persistent tile scheduler's; a few KB at most). Returns cudaErrorNotSupported
// when the problem does not fit (see above) or CUTLASS refuses it, the launch
// error otherwise. sm_count: the device's SM count (sizes the persistent grid).
cudaError_t cutlass_scaled_mm(const ScaledMM& p, void* workspace, size_t workspace_bytes, int sm_count,
                              cudaStream_t stream);

// Per-M launchers, one translation unit per input type (compile time).
cudaError_t cutlass_scaled_mm_i8(const ScaledMM& p, void* workspace, size_t workspace_bytes, int sm_count,
                                 cudaStream_t stream);
cudaError_t cutlass_scaled_mm_fp8(const ScaledMM& p, void* workspace, size_t workspace_bytes, int sm_count,
                                  cudaStream_t stream);

}  // namespace xqcuda
