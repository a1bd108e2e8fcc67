// cutlass_w8a8.hpp: the W8A8 GEMMs with the scaling fused into the epilogue
// (CUTLASS 3.x, sm_90a only): y[m][n] = acc[m][n] * s_x[m] * s_w[n] (+ bias[n])
// straight into BF16 or F16, acc the s32 (INT8) or f32 (FP8 E4M3) sum of
// x[m][:] . w[n][:]. No INT32 accumulator goes through memory (the cuBLASLt
// path, cublaslt.cpp + scale_epilogue, writes it and reads it back).
//
// Several kernel configurations (tile, cluster, schedule, tile scheduler) per
// input type; cutlass_w8a8_configs.cpp names them and picks one per problem
// (M bucket, then N, K or size), measured on an H200 (docs/cuda.md, "W8A8 GEMM routes").
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

// The kernel configurations. Name: input type, CTA tile MxN (K depth in the
// table), cluster, mainloop schedule; "sk" = the stream-K tile scheduler
// (CUTLASS splits the K loop of output tiles across CTAs when there are too
// few tiles for the SMs); "fast" = FP8 fast accumulation (no periodic f32
// promotion; torch._scaled_mm(use_fast_accum=True)'s arithmetic).
enum class W8Config : int {
  I8_64x64_c1x8 = 0,      // 64x64x256, cluster 1x8, warp-specialized
  I8_64x128_c2x1_pp,      // 64x128x256, cluster 2x1, ping-pong
  I8_128x128_c2x1_coop,   // 128x128x128, cluster 2x1, cooperative
  I8_128x128_c1x1_sk,     // 128x128x128, cluster 1x1, cooperative, stream-K (BF16 out only)
  I8_128x256_c2x1_coop,   // 128x256x128, cluster 2x1, cooperative (BF16 out only)
  I8_256x128_c2x1_coop,   // 256x128x128, cluster 2x1, cooperative (BF16 out only)
  I8_128x128_c2x1_pp,     // 128x128x128, cluster 2x1, ping-pong (BF16 out only)
  F8_64x64_c1x8,          // 64x64x128, cluster 1x8, warp-specialized
  F8_64x128_c2x1_pp,      // 64x128x128, cluster 2x1, ping-pong
  F8_128x128_c2x1_coop,   // 128x128x128, cluster 2x1, cooperative
  F8_128x128_c1x1_sk,     // 128x128x128, cluster 1x1, cooperative, stream-K (BF16 out only)
  F8_128x128_c2x1_pp_fast,  // 128x128x128, cluster 2x1, ping-pong, fast accumulation (BF16 out only)
  Count
};

struct W8ConfigInfo {
  W8Config id;
  const char* name;  // what XQUANT_CUDA_W8A8_CONFIG takes, e.g. "i8_128x128_c1x1_sk"
  DType ab;          // I8 or F8E4M3
  bool f16_out;      // also instantiated for F16 output (all take BF16)
  bool fast_accum;   // FP8 fast accumulation (auto never picks one)
};

// Every configuration, in W8Config order.
const W8ConfigInfo& w8_config_info(W8Config c);
// The configuration named `name`, or false.
bool w8_config_from_name(const char* name, W8Config* out);
// Whether configuration c can run p (input type, output type).
bool w8_config_takes(W8Config c, const ScaledMM& p);

// Whether the CUTLASS kernels take this problem: types (I8 or F8E4M3 in, BF16
// or F16 out), K and N multiples of 16 (TMA needs 16-byte row pitches),
// 16-byte aligned x, w and y, element-aligned scales and bias.
bool cutlass_scaled_mm_fits(const ScaledMM& p);

// What auto runs for p (measured on an H200): true and the configuration when
// CUTLASS should take it, false when cuBLASLt (+ our scaling pass) measured
// faster or CUTLASS does not fit.
bool cutlass_scaled_mm_auto(const ScaledMM& p, W8Config* out);

// The workspace a kernel asks for (the persistent and stream-K tile
// schedulers' flags and partial sums): get(ctx, bytes) returns device memory
// of at least `bytes` (ordered on the launch stream), or null.
struct W8Workspace {
  void* (*get)(void* ctx, size_t bytes) = nullptr;
  void* ctx = nullptr;
};

// Enqueue the GEMM on `stream` with configuration c. Returns
// cudaErrorNotSupported when the problem does not fit (see above), c does not
// take it, or CUTLASS refuses it; the launch error otherwise. sm_count: the
// device's SM count (sizes the persistent grid).
cudaError_t cutlass_scaled_mm(const ScaledMM& p, W8Config c, const W8Workspace& ws, int sm_count,
                              cudaStream_t stream);

// Launchers, one translation unit per input type (compile time).
cudaError_t cutlass_scaled_mm_i8(const ScaledMM& p, W8Config c, const W8Workspace& ws, int sm_count,
                                 cudaStream_t stream);
cudaError_t cutlass_scaled_mm_fp8(const ScaledMM& p, W8Config c, const W8Workspace& ws, int sm_count,
                                  cudaStream_t stream);

}  // namespace xqcuda
