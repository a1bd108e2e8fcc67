// gguf_gemv_rows_avx2.cpp: the row-range Q4_K decode GEMV of
// gguf_gemv_rows.hpp for CPUs with AVX2 + FMA + F16C (gguf_gemv_rows_q4k.inc;
// it needs nothing newer). Q4_0 and Q8_0 keep their per-row AVX2 kernels
// there: their row-range form is built on VNNI's vpdpbusd.
#include "gguf_gemv_rows.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_Q4K __attribute__((target("avx2,fma,f16c")))

namespace xquant::cpu {
namespace {

XQ_Q4K inline float f16s(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

XQ_Q4K inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#include "gguf_gemv_rows_q4k.inc"

}  // namespace

extern const BlockRowsKernel kAvx2Q4_KRows = &gemv_rows_q4_k;

}  // namespace xquant::cpu
