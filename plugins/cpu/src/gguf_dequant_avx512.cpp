// gguf_dequant_avx512.cpp: the AVX-512 GGUF block decoders (gguf_dequant.hpp;
// the per-type code in gguf_dequant_x86.inc), 16 floats per store.
// Per-function target attributes, as qkernels_avx512.cpp; the table is handed
// out only when cpu_has(Isa::avx512).
#include "gguf_dequant.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_DT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

enum class Form { scaled, plus_min, minus_min };

// Sixteen floats from 16 int8 codes: s * code, then +/- m.
template <Form F>
XQ_DT inline void put16(float* y, __m128i c, float s, float m) {
  __m512 v = _mm512_mul_ps(_mm512_set1_ps(s), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c)));
  if constexpr (F == Form::plus_min) v = _mm512_add_ps(v, _mm512_set1_ps(m));
  if constexpr (F == Form::minus_min) v = _mm512_sub_ps(v, _mm512_set1_ps(m));
  _mm512_storeu_ps(y, v);
}

template <Form F>
XQ_DT inline void put32(float* y, __m256i q, float s0, float s1, float m0, float m1) {
  put16<F>(y, _mm256_castsi256_si128(q), s0, m0);
  put16<F>(y + 16, _mm256_extracti128_si256(q, 1), s1, m1);
}

#include "gguf_dequant_x86.inc"

}  // namespace

const GgufDequantKernels kAvx512GgufDequant = {"avx512", dq_q4_0, dq_q4_1, dq_q5_0, dq_q5_1,
                                               dq_q8_0, dq_q4_k, dq_q5_k, dq_q6_k};

}  // namespace xquant::cpu
