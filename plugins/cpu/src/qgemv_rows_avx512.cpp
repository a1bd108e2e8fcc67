// qgemv_rows_avx512.cpp: the row-range GEMV (qgemv_rows.hpp) with AVX-512
// VNNI: vpdpbusd (u8 x s8, four products summed into each int32 lane) on
// 512-bit vectors, two 32-column blocks per instruction, as llama.cpp's
// ggml_vec_dot_q4_0_q8_0 does on 256 bits (ggml-cpu/arch/x86/quants.c,
// mul_sum_us8_pairs_float). The weights enter unsigned: INT4 as nibbles
// (code + 8), INT8 as code + 128 (xor 0x80); QuantizedActs::corr takes the
// offset times the block's activation sum back out of lane 0 of each block
// with one vector subtraction, so each block's int32 result is exact.
// Per block pair: 6 instructions to unpack nibbles, then dpbusd, sub, cvt,
// fmadd (the activation scales as a lane vector); per group one fmadd by the
// weight scale; per row one horizontal sum. Dispatch hands this table out
// only when the CPU has avx512f, bw, vl and vnni.
#include "qgemv_rows.hpp"

#include <immintrin.h>

#define XQ_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

// One INT4 block (16 bytes) -> 32 nibbles in column order in the low 256
// bits (byte i holds columns i and 16 + i), zeros above.
XQ_AVX512 inline __m512i nibbles1(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
  return _mm512_inserti64x4(_mm512_setzero_si512(), u, 0);
}

// Two consecutive INT4 blocks (32 bytes) -> 64 nibbles in column order:
// 128-bit lanes [low b, high b, low b + 1, high b + 1].
XQ_AVX512 inline __m512i nibbles2(const uint8_t* p) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i m = _mm256_set1_epi8(0x0F);
  const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m)),
                                       _mm256_and_si256(_mm256_srli_epi16(v, 4), m), 1);
  return _mm512_shuffle_i64x2(u, u, _MM_SHUFFLE(3, 1, 2, 0));
}

template <bool kInt4>
XQ_AVX512 void gemv(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  const __m512i c80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i zero = _mm512_setzero_si512();
  constexpr __mmask16 kLow8 = 0x00FF;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.codes + n * w.row_bytes;
    const float* s = w.scales + n * w.G;
    __m512 tot = _mm512_setzero_ps();
    for (int64_t g = 0; g < w.G; ++g) {
      __m512 acc = _mm512_setzero_ps();
      int64_t b = w.bb[g];
      for (; b + 2 <= w.bb[g + 1]; b += 2) {
        const __m512i u = kInt4 ? nibbles2(row + b * 16) : _mm512_xor_si512(_mm512_loadu_si512(row + b * 32), c80);
        const __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u, _mm512_loadu_si512(a.q + b * 32)),
                                           _mm512_loadu_si512(a.corr + b * 8));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_loadu_ps(a.sa8 + b * 8), acc);
      }
      if (b < w.bb[g + 1]) {  // an odd last block: the same on the low 256 bits, zeros above
        const __m512i u = kInt4 ? nibbles1(row + b * 16)
                                : _mm512_xor_si512(_mm512_maskz_loadu_epi32(kLow8, row + b * 32), c80);
        const __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u, _mm512_maskz_loadu_epi32(kLow8, a.q + b * 32)),
                                           _mm512_maskz_loadu_epi32(kLow8, a.corr + b * 8));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_maskz_loadu_ps(kLow8, a.sa8 + b * 8), acc);
      }
      tot = _mm512_fmadd_ps(_mm512_set1_ps(s[g]), acc, tot);
    }
    y[n] = _mm512_reduce_add_ps(tot) - zero_point_term(w, a, n) + (w.bias ? w.bias[n] : 0.0f);
  }
}

}  // namespace

const GemvRowsKernels kAvx512GemvRows{"avx512", 8, 128, &gemv<true>, &gemv<false>};

}  // namespace xquant::cpu
