// gguf_gemv_rows_avx2.cpp: the row-range K-quant decode GEMVs of
// gguf_gemv_rows.hpp for CPUs with AVX2 + FMA + F16C: Q4_K one row at a time
// on the stored blocks (gguf_gemv_rows_q4k.inc), Q4_K and Q6_K eight at a
// time on their interleaved copies (gguf_q4_k_rows8.inc,
// gguf_q6_k_rows8.inc); they need nothing newer. Q8_0 keeps its per-row AVX2
// kernel here (its row-range form is built on VNNI's vpdpbusd); Q4_0's
// eight-row kernels are in qgemv_rows8_avx2.cpp.
#include "gguf_gemv_rows.hpp"
#include "qgemv_rows8.hpp"

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
#include "gguf_q4_k_rows8.inc"
#include "gguf_q6_k_rows8.inc"

}  // namespace

extern const BlockRowsKernel kAvx2Q4_KRows = &gemv_rows_q4_k;
extern const BlockRows8Kernel kAvx2Q4_KRows8i = &q4_k_rows8_interleaved;
extern const BlockRows8Kernel kAvx2Q6_KRows8i = &q6_k_rows8_interleaved;

}  // namespace xquant::cpu
