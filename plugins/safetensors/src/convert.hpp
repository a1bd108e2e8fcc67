// convert.hpp: converting stored safetensors elements to F32/F16/BF16.
//
// Stored data may sit at any byte offset (other writers than the reference
// one do not align tensors), so every element is fetched with memcpy, never
// through a cast pointer. Floats go through f32 (exact for F16/BF16/F8);
// integers are converted by value (I64/U64 beyond 2^24 round, as in torch).
#pragma once

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/host.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace xquant::st {

inline size_t element_size(xq_dtype t) { return sdk::dtype_size(t); }

// OCP FP8 E4M3 ("fn": no infinities, S.1111.111 is NaN), bias 7.
inline float f8_e4m3_to_f32(uint8_t v) {
  int s = v >> 7, e = (v >> 3) & 0xF, m = v & 7;
  float r;
  if (e == 0xF && m == 7) r = std::numeric_limits<float>::quiet_NaN();
  else if (e == 0) r = std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^-6
  else r = std::ldexp(1.0f + m / 8.0f, e - 7);
  return s ? -r : r;
}

// FP8 E5M2 (IEEE-like, bias 15, with infinities and NaNs).
inline float f8_e5m2_to_f32(uint8_t v) {
  // E5M2 is the top byte of an IEEE half.
  return sdk::f16_to_f32(static_cast<uint16_t>(v) << 8);
}

template <class T>
inline T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element i of `src` (stored as `t`) as f32; false when `t` has no numeric
// conversion.
inline bool convertible(xq_dtype t) { return element_size(t) != 0; }

inline float element_f32(xq_dtype t, const unsigned char* src, uint64_t i) {
  switch (t) {
    case XQ_DTYPE_F32: return load<float>(src + 4 * i);
    case XQ_DTYPE_F16: return sdk::f16_to_f32(load<uint16_t>(src + 2 * i));
    case XQ_DTYPE_BF16: return sdk::bf16_to_f32(load<uint16_t>(src + 2 * i));
    case XQ_DTYPE_F64: return static_cast<float>(load<double>(src + 8 * i));
    case XQ_DTYPE_I8: return static_cast<float>(load<int8_t>(src + i));
    case XQ_DTYPE_U8: return static_cast<float>(src[i]);
    case XQ_DTYPE_BOOL: return src[i] ? 1.0f : 0.0f;
    case XQ_DTYPE_I16: return static_cast<float>(load<int16_t>(src + 2 * i));
    case XQ_DTYPE_U16: return static_cast<float>(load<uint16_t>(src + 2 * i));
    case XQ_DTYPE_I32: return static_cast<float>(load<int32_t>(src + 4 * i));
    case XQ_DTYPE_U32: return static_cast<float>(load<uint32_t>(src + 4 * i));
    case XQ_DTYPE_I64: return static_cast<float>(load<int64_t>(src + 8 * i));
    case XQ_DTYPE_U64: return static_cast<float>(load<uint64_t>(src + 8 * i));
    case XQ_DTYPE_F8_E4M3: return f8_e4m3_to_f32(src[i]);
    case XQ_DTYPE_F8_E5M2: return f8_e5m2_to_f32(src[i]);
    default: return 0.0f;
  }
}

// Converts `n` elements of `src` (dtype `from`) into `dst` (dtype `to`, one
// of F32/F16/BF16, or `from` itself for a plain copy).
inline void convert(xq_dtype from, const unsigned char* src, uint64_t n, xq_dtype to, void* dst) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(n * element_size(from)));
    return;
  }
  auto* out = static_cast<unsigned char*>(dst);
  switch (to) {
    case XQ_DTYPE_F32:
      for (uint64_t i = 0; i < n; ++i) {
        float v = element_f32(from, src, i);
        std::memcpy(out + 4 * i, &v, 4);
      }
      return;
    case XQ_DTYPE_F16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t v = sdk::f32_to_f16(element_f32(from, src, i));
        std::memcpy(out + 2 * i, &v, 2);
      }
      return;
    case XQ_DTYPE_BF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t v = sdk::f32_to_bf16(element_f32(from, src, i));
        std::memcpy(out + 2 * i, &v, 2);
      }
      return;
    default:
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "conversion target must be F32, F16 or BF16");
  }
}

}  // namespace xquant::st
