// qgemv_rows_avx2.cpp: the row-range GEMV (qgemv_rows.hpp) with AVX2 + FMA,
// one 32-column block per step as llama.cpp's AVX2 ggml_vec_dot_q4_0_q8_0
// (ggml-cpu/arch/x86/quants.c): vpmaddubsw (u8 x s8 pairs into int16) and
// vpmaddwd against ones. INT4 nibbles enter unsigned (2 * 15 * 127 cannot
// saturate) and QuantizedActs::corr takes 8 * (block sum) back out; INT8
// codes use the sign trick of mul_sum_i8_pairs_float (|c| times a with c's
// sign moved onto a; 2 * 128 * 127 cannot saturate since |a| <= 127), so
// they need no offset. Two accumulator chains per group (even and odd
// blocks). Dispatch hands this table out only when the CPU has avx2 and fma.
#include "qgemv_rows.hpp"

#include "stream_prefetch.hpp"

#include <immintrin.h>

#define XQ_AVX2 __attribute__((target("avx2,fma")))

namespace xquant::cpu {
namespace {

XQ_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

XQ_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Block b's exact int32 lanes of sum c * q (c the signed code).
template <bool kInt4>
XQ_AVX2 inline __m256i block(const uint8_t* row, const QuantizedActs& a, int64_t b) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i q = load256(a.q + b * 32);
  if constexpr (kInt4) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
    const __m256i u =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
    return _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(u, q), ones), load256(a.corr + b * 8));
  } else {
    const __m256i c = load256(row + b * 32);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(q, c)), ones);
  }
}

template <bool kInt4>
XQ_AVX2 void gemv(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.codes + n * w.row_bytes;
    const float* s = w.scales + n * w.G;
    __m256 tot = _mm256_setzero_ps();
    for (int64_t g = 0; g < w.G; ++g) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      int64_t b = w.bb[g];
      for (; b + 2 <= w.bb[g + 1]; b += 2) {
        prefetch_stream(row + b * (kInt4 ? 16 : 32));  // a pair: one cache line of INT8 codes, half of INT4
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block<kInt4>(row, a, b)), _mm256_loadu_ps(a.sa8 + b * 8), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block<kInt4>(row, a, b + 1)), _mm256_loadu_ps(a.sa8 + b * 8 + 8), acc1);
      }
      if (b < w.bb[g + 1])
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block<kInt4>(row, a, b)), _mm256_loadu_ps(a.sa8 + b * 8), acc0);
      tot = _mm256_fmadd_ps(_mm256_set1_ps(s[g]), _mm256_add_ps(acc0, acc1), tot);
    }
    y[n] = hsum(tot) - zero_point_term(w, a, n) + (w.bias ? w.bias[n] : 0.0f);
  }
}

}  // namespace

const GemvRowsKernels kAvx2GemvRows{"avx2", 8, 0, &gemv<true>, &gemv<false>};

}  // namespace xquant::cpu
