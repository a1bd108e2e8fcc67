// act_quant.cuh: the arithmetic of W8A8's activation quantization, shared by
// the quantization kernels (w8a8.cu) and the few-row product kernel that
// quantizes its row itself (w8a8_gemv.cu), so both give the same codes and
// scales bit for bit: scale = max|x| / 127 (INT8) or / 448 (E4M3), 1 when
// that is not positive; code = x * (1 / scale) rounded to nearest even and
// clamped to [-128, 127], or converted to E4M3 saturating to finite
// (vLLM's scaled_int8_quant / scaled_fp8_quant semantics).
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace xqcuda {

__device__ __forceinline__ float act_scale(float amax, bool fp8) {
  const float scale = amax / (fp8 ? 448.f : 127.f);
  return scale > 0.f ? scale : 1.f;
}

// The code of one value already multiplied by 1 / scale.
__device__ __forceinline__ uint8_t act_code(float f, bool fp8) {
  if (fp8) return __nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3);
  return static_cast<uint8_t>(static_cast<int8_t>(fminf(fmaxf(rintf(f), -128.f), 127.f)));
}

// Eight 16-bit values (one 16-byte load, T = __nv_bfloat16 or __half) times
// inv = 1 / scale as eight codes in 8 bytes.
template <typename T>
__device__ __forceinline__ uint2 act_codes8(const uint4& v, float inv, bool fp8) {
  const T* h = reinterpret_cast<const T*>(&v);
  uint8_t b[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) b[e] = act_code(static_cast<float>(h[e]) * inv, fp8);
  return *reinterpret_cast<const uint2*>(b);
}

// The largest |value| of eight 16-bit values, folded into amax.
template <typename T>
__device__ __forceinline__ float act_amax8(const uint4& v, float amax) {
  const T* h = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(static_cast<float>(h[e])));
  return amax;
}

}  // namespace xqcuda
