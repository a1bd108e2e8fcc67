// qgemm_kernels_avx2.cpp: the AVX2 prefill kernels: 8-column
// dequantization, and the W8A8 panels of qgemm_panel_avx2.cpp (AVX2 has no
// vpdpbusd; AVX-VNNI is a separate feature this table does not assume, so
// the panel kernel sums products with vpmaddubsw / vpmaddwd).
#include "qgemm_kernels.hpp"

#include <immintrin.h>

#define XQ_AVX2 __attribute__((target("avx2,fma")))

namespace xquant::cpu {
namespace {

// (code - zg) * sg on 8 int32 codes: the scalar expression, lane by lane.
XQ_AVX2 inline void store_dequant(float* out, __m256i code, __m256 zg, __m256 sg) {
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(code), zg), sg));
}

XQ_AVX2 void dequant_rows(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, const float* z,
                          int64_t G, const int64_t* bb, int64_t nrows, float* out) {
  const int64_t Kp = bb[G] * kBlock;
  const __m128i low = _mm_set1_epi8(0x0F);
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t r = 0; r < nrows; ++r) {
    const uint8_t* c = codes + r * row_bytes;
    float* o = out + r * Kp;
    for (int64_t g = 0; g < G; ++g) {
      const __m256 sg = _mm256_set1_ps(s[r * G + g]), zg = _mm256_set1_ps(z ? z[r * G + g] : 0.0f);
      for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
        if (int4) {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + b * 16));
          const __m128i lo = _mm_and_si128(v, low), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low);
          float* ob = o + b * kBlock;
          store_dequant(ob, _mm256_sub_epi32(_mm256_cvtepu8_epi32(lo), eight), zg, sg);
          store_dequant(ob + 8, _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), eight), zg, sg);
          store_dequant(ob + 16, _mm256_sub_epi32(_mm256_cvtepu8_epi32(hi), eight), zg, sg);
          store_dequant(ob + 24, _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), eight), zg, sg);
        } else {
          for (int h = 0; h < 4; ++h)
            store_dequant(o + b * kBlock + 8 * h,
                          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + b * kBlock + 8 * h))),
                          zg, sg);
        }
      }
    }
  }
}

}  // namespace

// Integer prefill by default for INT4 codes only (bench_qgemm, AVX2 forced
// on the AVX-512 EPYC, M = 256, x F32 SGEMM, 1 / 2 threads): W4A16 g128
// panels 1.13-1.47x / 0.85-1.22x and GGUF Q4_0 1.10-1.52x / 0.92-1.31x,
// where dequantize + SGEMM gives 0.94-1.03x; INT8 panels (W8A16) 0.59-0.90x,
// so INT8 weights keep SGEMM (qgemm_panel_avx2.cpp says why).
const QGemmKernels kAvx2QGemmKernels{"avx2", &pack_panel_i8_words, &dequant_rows, &panel_i8_avx2, false, &panel_q8_avx2,
                                      true, false};

}  // namespace xquant::cpu
