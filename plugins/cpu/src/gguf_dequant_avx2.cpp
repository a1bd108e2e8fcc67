// gguf_dequant_avx2.cpp: the AVX2 GGUF block decoders (gguf_dequant.hpp;
// the per-type code in gguf_dequant_x86.inc), 8 floats per store.
// Per-function target attributes, as qkernels_avx2.cpp; the table is handed
// out only when cpu_has(Isa::avx2) (avx2, fma, f16c).
#include "gguf_dequant.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_DT __attribute__((target("avx2,fma,f16c")))

namespace xquant::cpu {
namespace {

enum class Form { scaled, plus_min, minus_min };

// Eight floats from the low 8 int8 codes of c: s * code, then +/- m.
template <Form F>
XQ_DT inline void put8(float* y, __m128i c, __m256 s, __m256 m) {
  __m256 v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)));
  if constexpr (F == Form::plus_min) v = _mm256_add_ps(v, m);
  if constexpr (F == Form::minus_min) v = _mm256_sub_ps(v, m);
  _mm256_storeu_ps(y, v);
}

template <Form F>
XQ_DT inline void put32(float* y, __m256i q, float s0, float s1, float m0, float m1) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m256 vs0 = _mm256_set1_ps(s0), vm0 = _mm256_set1_ps(m0), vs1 = _mm256_set1_ps(s1), vm1 = _mm256_set1_ps(m1);
  put8<F>(y, lo, vs0, vm0);
  put8<F>(y + 8, _mm_srli_si128(lo, 8), vs0, vm0);
  put8<F>(y + 16, hi, vs1, vm1);
  put8<F>(y + 24, _mm_srli_si128(hi, 8), vs1, vm1);
}

#include "gguf_dequant_x86.inc"

}  // namespace

const GgufDequantKernels kAvx2GgufDequant = {"avx2", dq_q4_0, dq_q4_1, dq_q5_0, dq_q5_1,
                                             dq_q8_0, dq_q4_k, dq_q5_k, dq_q6_k};

}  // namespace xquant::cpu
