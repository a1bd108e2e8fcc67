// half.hpp: IEEE binary16 and bfloat16 <-> float32, bit-exact.
//
// f32 -> bf16 rounds to nearest even and keeps NaN quiet, as ggml and
// PyTorch do; f32 -> f16 rounds to nearest even with subnormals and
// overflow to infinity. Header-only so every plugin can convert without
// linking the runtime.
#pragma once

#include <cstdint>
#include <cstring>

namespace xquant::sdk {

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FFu;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    u = sign | 0x7F800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return bits_to_f32(u);
}

inline uint16_t f32_to_f16(float f) {
  uint32_t u = f32_to_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t absu = u & 0x7FFFFFFFu;
  if (absu > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
  if (absu >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to inf
  if (absu < 0x38800000u) {  // subnormal or zero in f16
    // Round-to-nearest-even via float addition trick: add 0.5 (as 2^-1 in f16 subnormal units).
    float a = bits_to_f32(absu);
    float magic = bits_to_f32(0x3F000000u);  // 0.5
    a += magic;
    uint32_t r = f32_to_bits(a) - 0x3F000000u;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t mant_odd = (absu >> 13) & 1u;
  absu += 0xC8000FFFu + mant_odd;  // rebias exponent (-112 << 23) and round
  return static_cast<uint16_t>(sign | (absu >> 13));
}

// Rounds `x` to the nearest value representable in f16 / bf16.
inline float round_to_f16(float x) { return f16_to_f32(f32_to_f16(x)); }
inline float round_to_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

}  // namespace xquant::sdk
