// int8_rounding.hpp: the activation quantizers' two loops, max |x| of a row
// and x * inv clamped and rounded to int8, with SSE2 (every x86-64 CPU has
// it) and a scalar fallback that gives the same codes.
//
// Why by hand: this library is built for baseline x86-64 without
// -ffast-math, so GCC vectorizes neither loop (float min/max with NaN
// semantics are control flow to it) and std::nearbyint is a libm call per
// element (no roundss before SSE4.1); the quantizers ran at about 5 ns an
// element, a third of the W8A8 prefill time of SmolLM2's down projection
// (bench_qgemm, M = 256, AVX2 EPYC).
//
// Rounding: cvtps2dq rounds in the MXCSR mode, round to nearest with ties
// to even by default, as std::nearbyint does in the default mode; the
// scalar fallback adds and subtracts 1.5 * 2^23 (exact for |v| < 2^22, which
// the clamp guarantees). A NaN input becomes `lo`, as std::max(lo, NaN)
// does in the scalar code this replaces.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace xquant::cpu {

inline float round_even_small(float v) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (v + kShift) - kShift;
}

// max |x[i]| over i < n (0 for n = 0).
inline float abs_max(const float* x, int64_t n) {
  int64_t i = 0;
  float m = 0.0f;
#if defined(__SSE2__)
  const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    m0 = _mm_max_ps(m0, _mm_and_ps(_mm_loadu_ps(x + i), magnitude));
    m1 = _mm_max_ps(m1, _mm_and_ps(_mm_loadu_ps(x + i + 4), magnitude));
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_max_ps(m0, m1));
  m = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
#endif
  for (; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// q[i] = round(clamp(x[i] * inv, lo, hi)) for i < n; lo and hi integers in
// [-128, 127].
inline void scale_round_i8(const float* x, int64_t n, float inv, float lo, float hi, int8_t* q) {
  int64_t i = 0;
#if defined(__SSE2__)
  const __m128 vinv = _mm_set1_ps(inv), vlo = _mm_set1_ps(lo), vhi = _mm_set1_ps(hi);
  auto codes4 = [&](int64_t j) {  // max(v, lo) gives lo for a NaN v (maxps returns its second operand)
    return _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(x + j), vinv), vlo), vhi));
  };
  for (; i + 16 <= n; i += 16) {
    const __m128i lo16 = _mm_packs_epi32(codes4(i), codes4(i + 4));
    const __m128i hi16 = _mm_packs_epi32(codes4(i + 8), codes4(i + 12));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(lo16, hi16));
  }
#endif
  for (; i < n; ++i) q[i] = static_cast<int8_t>(round_even_small(std::min(hi, std::max(lo, x[i] * inv))));
}

}  // namespace xquant::cpu
