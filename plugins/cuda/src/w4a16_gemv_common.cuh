// w4a16_gemv_common.cuh: device helpers the W4A16 GEMVs share
// (w4a16_gemv.cu, w4a16_gemv_stream.cu): int4 -> 16-bit dequantization of a
// pair, one m16n8k16 mma, a streaming 16-byte load.
#pragma once

#include "common.cuh"

#include <type_traits>

namespace xqcuda {
namespace w4gemv {

template <typename T>
struct Magic;
template <>
struct Magic<__nv_bfloat16> {
  static constexpr uint32_t kBits = 0x43004300u;  // bf16 128.0 in both halves
};
template <>
struct Magic<__half> {
  static constexpr uint32_t kBits = 0x64006400u;  // f16 1024.0 in both halves
};

// Nibbles at bits 0 and 16 of q, dequantized to a pair of T.
template <typename T>
__device__ __forceinline__ uint32_t dequant_pair(uint32_t q, uint32_t zb, uint32_t s) {
  using T2 = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  uint32_t v = (q & 0x000F000Fu) | Magic<T>::kBits;
  T2 r = __hmul2(__hsub2(*reinterpret_cast<T2*>(&v), *reinterpret_cast<T2*>(&zb)), *reinterpret_cast<T2*>(&s));
  return *reinterpret_cast<uint32_t*>(&r);
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Weights are read once: stream them past L1.
__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

}  // namespace w4gemv
}  // namespace xqcuda
