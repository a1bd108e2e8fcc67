// fp8.hpp: the one FP8 E4M3 encoder and decoder of xquant (OCP E4M3FN, the
// format of torch.float8_e4m3fn and safetensors' F8_E4M3): 1 sign bit, 4
// exponent bits with bias 7, 3 mantissa bits; the largest finite value is
// 448, there are no infinities, and 0x7f / 0xff are NaN.
//
//   uint8_t c = sdk::f32_to_e4m3(x);  // clamp to +-448, round half to even
//   float   v = sdk::e4m3_to_f32(c);  // exact
//
// The encoder saturates: a finite value beyond +-448 (and +-inf) becomes
// +-448, NaN stays NaN (0x7f, sign kept). That is compressed-tensors'
// quantizer (forward.py _quantize clamps to [q_min, q_max] = +-448 before
// .to(torch.float8_e4m3fn)), CUDA's __nv_cvt_float_to_fp8(x, __NV_SATFINITE,
// __NV_E4M3) as the cuda provider quantizes activations, and torch 2.15's
// plain cast. The rounding inside the range is c10's
// fp8e4m3fn_from_fp32_value (c10/util/Float8_e4m3fn.h): nearest, ties to
// even, subnormals down to 2^-9. tests/sdk/test_fp8.cpp checks every code and
// 4000 values against torch (tests/interop/make_e4m3_fixture.py).
#pragma once

#include <xquant/xq_tensor.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

namespace xquant::sdk {

inline constexpr float kE4M3Max = 448.0f;

namespace detail {
inline uint32_t f32_bits(float f) noexcept {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace detail

// The value of an E4M3FN byte (exact in float; NaN for 0x7f and 0xff).
inline float e4m3_to_f32(uint8_t c) noexcept {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80) << 24;
  const uint32_t exp = (c >> 3) & 0x0F, mant = c & 0x07;
  if (exp == 0x0F && mant == 0x07) return std::numeric_limits<float>::quiet_NaN();
  if (exp == 0) {  // subnormal: mant * 2^-9
    const float v = static_cast<float>(mant) * 0.001953125f;
    return sign ? -v : v;
  }
  // Normal: rebias the exponent (7 -> 127) and widen the mantissa (3 -> 23 bits).
  return detail::f32_from_bits(sign | ((exp + 120) << 23) | (mant << 20));
}

// float -> E4M3FN byte, saturating (see the top of this file).
inline uint8_t f32_to_e4m3(float f) noexcept {
  constexpr uint32_t kDenormMask = uint32_t{141} << 23;  // 2^14: aligns the subnormal mantissa to bit 0
  if (f > kE4M3Max) f = kE4M3Max;    // NaN compares false both times
  if (f < -kE4M3Max) f = -kE4M3Max;
  uint32_t bits = detail::f32_bits(f);
  const uint32_t sign = bits & 0x80000000u;
  bits ^= sign;
  uint8_t out;
  if (bits > 0x7F800000u) {  // NaN
    out = 0x7F;
  } else if (bits < (uint32_t{121} << 23)) {  // below 2^-6, the smallest normal: a subnormal code (or 0)
    // Adding 2^14 makes the FPU round the value to a multiple of 2^-9 (half to even).
    bits = detail::f32_bits(detail::f32_from_bits(bits) + detail::f32_from_bits(kDenormMask));
    out = static_cast<uint8_t>(bits - kDenormMask);
  } else {
    const uint32_t mant_odd = (bits >> 20) & 1u;
    bits += (static_cast<uint32_t>(7 - 127) << 23) + 0x7FFFFu;  // rebias, round half up ...
    bits += mant_odd;                                             // ... or half to even
    out = static_cast<uint8_t>(bits >> 20);
  }
  return static_cast<uint8_t>(out | (sign >> 24));
}

// Whether a canonical tensor's `bits` (or act_bits) names float codes, and
// which (XQ_CODE_DTYPE, xq_tensor.h).
constexpr bool is_float_code(uint32_t bits) noexcept { return XQ_CODE_DTYPE(bits) != XQ_DTYPE_INVALID; }
constexpr bool is_e4m3_code(uint32_t bits) noexcept { return bits == XQ_BITS_F8_E4M3; }
// Bits per stored code: 2..8 for integers, 8 for FP8.
constexpr uint32_t code_width(uint32_t bits) noexcept { return XQ_CODE_WIDTH(bits); }

// How a message names a tensor's codes: "FP8 E4M3" (XQ_BITS_F8_E4M3),
// "4-bit integer" (2..8), otherwise the raw value in hex ("codes 0x0f08"),
// so a refusal never calls FP8 "3592 bits".
inline std::string code_format_name(uint32_t bits) {
  if (is_e4m3_code(bits)) return "FP8 E4M3";
  if (bits >= 2 && bits <= 8) return std::to_string(bits) + "-bit integer";
  char buf[32];
  std::snprintf(buf, sizeof buf, "codes 0x%04x", bits);
  return buf;
}

}  // namespace xquant::sdk
