// qgemm_kernels_avx512.cpp: the AVX-512 (F + BW + VL + VNNI) prefill
// kernels: 16-column dequantization, and the panel micro-kernels on vpdpbusd
// (u8 x s8, four products summed into int32 lanes; a panel row per lane, so
// no horizontal sums): W8A8's (per-token activations) and the weight-only
// integer prefill's (per-block activation scales). Per-function target attributes, as in
// qkernels_avx512.cpp.
#include "qgemm_kernels.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

// (code - zg) * sg on 16 int32 codes: the scalar expression, lane by lane.
XQ_AVX512 inline void store_dequant(float* out, __m512i code, __m512 zg, __m512 sg) {
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(code), zg), sg));
}

XQ_AVX512 void dequant_rows(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, const float* z,
                            int64_t G, const int64_t* bb, int64_t nrows, float* out) {
  const int64_t Kp = bb[G] * kBlock;
  const __m128i low = _mm_set1_epi8(0x0F);
  const __m512i eight = _mm512_set1_epi32(8);
  for (int64_t r = 0; r < nrows; ++r) {
    const uint8_t* c = codes + r * row_bytes;
    float* o = out + r * Kp;
    for (int64_t g = 0; g < G; ++g) {
      const __m512 sg = _mm512_set1_ps(s[r * G + g]), zg = _mm512_set1_ps(z ? z[r * G + g] : 0.0f);
      for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
        if (int4) {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + b * 16));
          store_dequant(o + b * kBlock, _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(v, low)), eight), zg, sg);
          store_dequant(o + b * kBlock + 16,
                        _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), low)), eight), zg, sg);
        } else {
          const __m128i* p = reinterpret_cast<const __m128i*>(c + b * kBlock);
          store_dequant(o + b * kBlock, _mm512_cvtepi8_epi32(_mm_loadu_si128(p)), zg, sg);
          store_dequant(o + b * kBlock + 16, _mm512_cvtepi8_epi32(_mm_loadu_si128(p + 1)), zg, sg);
        }
      }
    }
  }
}

// One 4-column word of each of 16 rows per gather (row i at i * row_bytes),
// missing rows filled with code 0. INT4 words: column 4t..4t+3 of a block
// are the low nibbles of bytes 4t..4t+3 (t < 4) or the high nibbles of bytes
// 4(t - 4)..4(t - 4)+3 (qkernels.hpp's layout).
XQ_AVX512 void pack_panel_i8(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, int64_t G,
                             int64_t Kp, int64_t n0, int64_t nr, uint8_t* panel, float* ps) {
  const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(static_cast<int32_t>(row_bytes)));
  const __mmask16 have = static_cast<__mmask16>((1u << nr) - 1u);
  const uint8_t* base = codes + n0 * row_bytes;
  const __m512i low = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i fill = int4 ? _mm512_set1_epi8(static_cast<char>(0x88)) : _mm512_setzero_si512();
  for (int64_t q = 0; q < Kp / 4; ++q) {
    __m512i v;
    if (int4) {
      const int64_t b = q / 8, t = q % 8;
      v = _mm512_mask_i32gather_epi32(fill, have, rows, base + b * 16 + 4 * (t % 4), 1);
      v = _mm512_and_si512(t < 4 ? v : _mm512_srli_epi16(v, 4), low);
    } else {
      v = _mm512_xor_si512(_mm512_mask_i32gather_epi32(fill, have, rows, base + q * 4, 1), flip);
    }
    _mm512_storeu_si512(panel + q * kPanelRows * 4, v);
  }
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < kPanelRows; ++i) ps[g * kPanelRows + i] = i < nr ? s[(n0 + i) * G + g] : 0.0f;
}

// MT activation rows against one panel; MT accumulators stay in registers.
template <int MT>
XQ_AVX512 void panel_rows(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int32_t* asum,
                          const int64_t* bb, int64_t G, bool int8_codes, float* out) {
  static_assert(kPanelRows == 16, "one panel row per 32-bit lane of a 512-bit vector");
  __m512 tot[MT];
  for (int j = 0; j < MT; ++j) tot[j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i acc[MT];
    for (int j = 0; j < MT; ++j) acc[j] = _mm512_setzero_si512();
    for (int64_t q = bb[g] * (kBlock / 4); q < bb[g + 1] * (kBlock / 4); ++q) {
      const __m512i wv = _mm512_loadu_si512(panel + q * kPanelRows * 4);
      for (int j = 0; j < MT; ++j) {
        int32_t word;
        std::memcpy(&word, a + j * lda + q * 4, 4);
        acc[j] = _mm512_dpbusd_epi32(acc[j], wv, _mm512_set1_epi32(word));
      }
    }
    const __m512 sv = _mm512_loadu_ps(ps + g * kPanelRows);
    for (int j = 0; j < MT; ++j) {
      __m512i d = acc[j];
      if (int8_codes) d = _mm512_sub_epi32(d, _mm512_set1_epi32(128 * asum[j * G + g]));
      tot[j] = _mm512_add_ps(tot[j], _mm512_mul_ps(sv, _mm512_cvtepi32_ps(d)));
    }
  }
  for (int j = 0; j < MT; ++j) _mm512_storeu_ps(out + j * kPanelRows, tot[j]);
}

XQ_AVX512 void panel_i8(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int32_t* asum,
                        int64_t mt, const int64_t* bb, int64_t G, bool int8_codes, float* out) {
  static_assert(kPanelActRows == 8, "panel_i8 dispatches 1..8 activation rows");
  switch (mt) {
    case 1: return panel_rows<1>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    case 2: return panel_rows<2>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    case 3: return panel_rows<3>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    case 4: return panel_rows<4>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    case 5: return panel_rows<5>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    case 6: return panel_rows<6>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    case 7: return panel_rows<7>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
    default: return panel_rows<8>(panel, ps, a, lda, asum, bb, G, int8_codes, out);
  }
}

// MT activation rows of the q8 kind against one panel: each 32-column block's
// exact int32 dot in registers (eight vpdpbusd per row), then scaled into
// the float total as dot4_q8 / dot8_q8 do, (s_g * sa_b) * float(d), with a
// separate multiply and add so the bits are the pair kernels' (the library
// is built without contraction).
template <int MT>
XQ_AVX512 void panel_rows_q8(const uint8_t* panel, const float* ps, const float* pm, const float* am, const int8_t* a,
                             int64_t lda, const float* sa, int64_t ldsa, const int32_t* bsum, int32_t offset,
                             const int64_t* bb, int64_t G, float* out) {
  static_assert(kPanelRows == 16, "one panel row per 32-bit lane of a 512-bit vector");
  __m512 tot[MT];
  for (int j = 0; j < MT; ++j) tot[j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    const __m512 sv = _mm512_loadu_ps(ps + g * kPanelRows);
    const __m512 mv = pm ? _mm512_loadu_ps(pm + g * kPanelRows) : _mm512_setzero_ps();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      __m512i acc[MT];
      for (int j = 0; j < MT; ++j) acc[j] = _mm512_setzero_si512();
      for (int64_t q = b * (kBlock / 4); q < (b + 1) * (kBlock / 4); ++q) {
        const __m512i wv = _mm512_loadu_si512(panel + q * kPanelRows * 4);
        for (int j = 0; j < MT; ++j) {
          int32_t word;
          std::memcpy(&word, a + j * lda + q * 4, 4);
          acc[j] = _mm512_dpbusd_epi32(acc[j], wv, _mm512_set1_epi32(word));
        }
      }
      for (int j = 0; j < MT; ++j) {
        __m512i d = acc[j];
        if (bsum) d = _mm512_sub_epi32(d, _mm512_set1_epi32(offset * bsum[j * ldsa + b]));
        const __m512 scale = _mm512_mul_ps(sv, _mm512_set1_ps(sa[j * ldsa + b]));
        tot[j] = _mm512_add_ps(tot[j], _mm512_mul_ps(scale, _mm512_cvtepi32_ps(d)));
        if (pm) tot[j] = _mm512_sub_ps(tot[j], _mm512_mul_ps(mv, _mm512_set1_ps(am[j * ldsa + b])));
      }
    }
  }
  for (int j = 0; j < MT; ++j) _mm512_storeu_ps(out + j * kPanelRows, tot[j]);
}

// vpdpbusd takes any unsigned byte, so INT4 and INT8 panels run alike.
XQ_AVX512 void panel_q8(const uint8_t* panel, const float* ps, const float* pm, const float* am, const int8_t* a,
                        int64_t lda, const float* sa, int64_t ldsa, const int32_t* bsum, int32_t offset, int64_t mt,
                        const int64_t* bb, int64_t G, bool /*int8_codes*/, float* out) {
  static_assert(kPanelActRows == 8, "panel_q8 dispatches 1..8 activation rows");
  switch (mt) {
    case 1: return panel_rows_q8<1>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    case 2: return panel_rows_q8<2>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    case 3: return panel_rows_q8<3>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    case 4: return panel_rows_q8<4>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    case 5: return panel_rows_q8<5>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    case 6: return panel_rows_q8<6>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    case 7: return panel_rows_q8<7>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
    default: return panel_rows_q8<8>(panel, ps, pm, am, a, lda, sa, ldsa, bsum, offset, bb, G, out);
  }
}

// MT activation rows of the q8 kind against one Q6_K panel (panel_q6k of
// qgemm_kernels.hpp): per block two int32 half dots (four vpdpbusd each),
// each less 32 times its activation half sum, times its sub-block scale
// (vpmulld), added, then scaled into the float total with a separate
// multiply and add, as the scalar kernel.
template <int MT>
XQ_AVX512 void panel_rows_q6k(const uint8_t* panel, const float* ps, const int32_t* psc, const int8_t* a,
                              int64_t lda, const float* sa, int64_t ldsa, const int32_t* sum16, int64_t nblk,
                              float* out) {
  static_assert(kPanelRows == 16, "one panel row per 32-bit lane of a 512-bit vector");
  __m512 tot[MT];
  for (int j = 0; j < MT; ++j) tot[j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nblk; ++b) {
    __m512i dot[MT];
    for (int j = 0; j < MT; ++j) dot[j] = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      __m512i acc[MT];
      for (int j = 0; j < MT; ++j) acc[j] = _mm512_setzero_si512();
      for (int64_t q = b * (kBlock / 4) + 4 * h; q < b * (kBlock / 4) + 4 * (h + 1); ++q) {
        const __m512i wv = _mm512_loadu_si512(panel + q * kPanelRows * 4);
        for (int j = 0; j < MT; ++j) {
          int32_t word;
          std::memcpy(&word, a + j * lda + q * 4, 4);
          acc[j] = _mm512_dpbusd_epi32(acc[j], wv, _mm512_set1_epi32(word));
        }
      }
      const __m512i sc = _mm512_loadu_si512(psc + (2 * b + h) * kPanelRows);
      for (int j = 0; j < MT; ++j) {
        const __m512i half = _mm512_sub_epi32(acc[j], _mm512_set1_epi32(32 * sum16[j * 2 * ldsa + 2 * b + h]));
        dot[j] = _mm512_add_epi32(dot[j], _mm512_mullo_epi32(sc, half));
      }
    }
    const __m512 sv = _mm512_loadu_ps(ps + b * kPanelRows);
    for (int j = 0; j < MT; ++j) {
      const __m512 scale = _mm512_mul_ps(sv, _mm512_set1_ps(sa[j * ldsa + b]));
      tot[j] = _mm512_add_ps(tot[j], _mm512_mul_ps(scale, _mm512_cvtepi32_ps(dot[j])));
    }
  }
  for (int j = 0; j < MT; ++j) _mm512_storeu_ps(out + j * kPanelRows, tot[j]);
}

XQ_AVX512 void panel_q6k(const uint8_t* panel, const float* ps, const int32_t* psc, const int8_t* a, int64_t lda,
                         const float* sa, int64_t ldsa, const int32_t* sum16, int64_t mt, int64_t nblk, float* out) {
  static_assert(kPanelActRows == 8, "panel_q6k dispatches 1..8 activation rows");
  switch (mt) {
    case 1: return panel_rows_q6k<1>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    case 2: return panel_rows_q6k<2>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    case 3: return panel_rows_q6k<3>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    case 4: return panel_rows_q6k<4>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    case 5: return panel_rows_q6k<5>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    case 6: return panel_rows_q6k<6>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    case 7: return panel_rows_q6k<7>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
    default: return panel_rows_q6k<8>(panel, ps, psc, a, lda, sa, ldsa, sum16, nblk, out);
  }
}

}  // namespace

// Integer prefill by default for both code widths: W4A16 1.86 / 1.90x F32
// and W8A16 2.48 / 2.16x at 1 / 2 threads on Qwen2.5-1.5B shapes, against
// SGEMM's <= 1.0x (bench_qgemm, docs/engine.md).
// GGUF Q6_K too (panel_q6k): 1.20-1.41x F32 where its dequantize + SGEMM gave
// 0.90-0.99x (bench_qgemm, Qwen2.5-1.5B shapes, 1 / 2 threads, the Intel
// Xeon of session twenty-six; docs/engine.md "GGUF Q6_K prefill on INT8 panels").
const QGemmKernels kAvx512QGemmKernels{"avx512", &pack_panel_i8, &dequant_rows, &panel_i8, true, &panel_q8, true, true,
                                        &panel_q6k, true};

}  // namespace xquant::cpu
