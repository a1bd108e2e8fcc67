// qgemm_panel_avx2.cpp: the AVX2 panel kernels of qgemm_kernels.hpp (W8A8's
// panel_i8, the weight-only panel_q8, and the panel packing) for machines
// without VNNI. Same panel
// layout and the same outputs, bit for bit, as the scalar reference and the
// AVX-512 VNNI kernel; only the integer products are formed differently:
//   - INT4 codes (panel bytes u = nibble, 0..15): vpmaddubsw (u8 x s8, pairs
//     summed into int16) as llama.cpp's AVX2 q4_0 x q8_0 dot
//     (ggml-cpu/arch/x86/quants.c, mul_sum_us8_pairs_float). |u| <= 15 and
//     |a| <= 128, so a pair is at most 3840 and the eight pairs of a 32-column
//     block at most 30720: the int16 sums never saturate, and one vpmaddwd per
//     block widens them.
//   - INT8 codes (u = code + 128, 0..255): vpmaddubsw would saturate (255 x
//     127 x 2 > 32767), and llama.cpp's sign trick (|w| x sign(a, w)) is
//     exact only while no activation is -128, which static activation scales
//     reach. So both sides are widened to int16 (activations once per call)
//     and multiplied with vpmaddwd, exact for every input; the 128 * sum(a)
//     correction is subtracted per group as in the reference.
// INT4 is where the panels pay: one vpmaddubsw per 32 products (the int16
// sums widened once per block) against SGEMM's one FMA per 8, so W4A8
// prefill runs at 1.1-1.6x F32 SGEMM (bench_qgemm, AVX2 forced on the
// AVX-512 EPYC) where the pair-by-pair dots ran at 0.4-0.5x. INT8 needs a
// multiply per 16 products (vpmaddwd, or vpmaddubsw + vpmaddwd with the sign
// trick), the rate of FMA: its panels measured 0.62-0.75x F32 against the
// pair path's 0.62-0.85x, so the AVX2 table leaves INT8 pair by pair
// (panels_for_int8 false); the kernel stays exact and tested for both.
// panel_q8 (weight-only integer prefill, q8 activations with one scale per
// 32-column block) takes the same products block by block, each block's
// exact int32 sum scaled into a float total per row lane in the scalar
// table's order, (s_g * sa_b) * float(d): the scalar pair dots dot4_q8 /
// dot8_q8 bit for bit. AVX2's own pair dots keep eight float lanes per row
// (qkernels_avx2.cpp), so on AVX2 the prompt's products and the generated
// tokens' differ in float summation order only, as the row kernels of the
// decode already do.
// Eight panel rows per 256-bit vector (a row per int32 lane), so the two
// halves of a 16-row panel run one after the other; up to 4 activation rows
// at a time keep the accumulators in the 16 ymm registers.
#include "qgemm_kernels.hpp"

#include "grown_buffer.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#define XQ_AVX2 __attribute__((target("avx2,fma")))

namespace xquant::cpu {
namespace {

constexpr int64_t kHalfRows = 8;  // panel rows per 256-bit vector
constexpr int kMaxChunk = 4;      // activation rows per pass

XQ_AVX2 inline __m256i load_panel_half(const uint8_t* panel, int64_t q, int half) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + (q * kPanelRows + kHalfRows * half) * 4));
}

// out[j * kPanelRows + 8 * half + i] += ps * float(d) for the group's eight rows.
XQ_AVX2 inline void add_scaled(float* out, const float* ps_g, int half, __m256i d) {
  float* o = out + kHalfRows * half;
  const __m256 s = _mm256_loadu_ps(ps_g + kHalfRows * half);
  _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_mul_ps(s, _mm256_cvtepi32_ps(d))));
}

// INT4: the exact int32 sums of 32-column block b of MT activation rows
// (int8 at a + j * lda) against one half panel, a row per lane.
template <int MT>
XQ_AVX2 inline void int4_block(const uint8_t* panel, int half, const int8_t* a, int64_t lda, int64_t b, __m256i* d) {
  __m256i s16[MT];
  for (int j = 0; j < MT; ++j) s16[j] = _mm256_setzero_si256();
  for (int64_t q = b * (kBlock / 4); q < (b + 1) * (kBlock / 4); ++q) {
    const __m256i w = load_panel_half(panel, q, half);
    for (int j = 0; j < MT; ++j) {
      int32_t word;
      std::memcpy(&word, a + j * lda + q * 4, 4);
      s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(w, _mm256_set1_epi32(word)));
    }
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int j = 0; j < MT; ++j) d[j] = _mm256_madd_epi16(s16[j], ones);
}

// INT8: the exact int32 sums of panel words [q0, q1) with int16 operands
// (a16: the activation rows widened, row stride lda16). vpmaddwd on rows
// 4r..4r+3 x 4 columns leaves two partial sums per row; vphaddd joins them,
// in the lane order r0 r1 r4 r5 | r2 r3 r6 r7 that one 64-bit permute puts
// back.
template <int MT>
XQ_AVX2 inline void int8_words(const uint8_t* panel, int half, const int16_t* a16, int64_t lda16, int64_t q0,
                               int64_t q1, __m256i* d) {
  __m256i lo[MT], hi[MT];
  for (int j = 0; j < MT; ++j) lo[j] = hi[j] = _mm256_setzero_si256();
  for (int64_t q = q0; q < q1; ++q) {
    const __m256i w = load_panel_half(panel, q, half);
    const __m256i w_lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(w));
    const __m256i w_hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(w, 1));
    for (int j = 0; j < MT; ++j) {
      int64_t word;
      std::memcpy(&word, a16 + j * lda16 + q * 4, 8);
      const __m256i av = _mm256_set1_epi64x(word);
      lo[j] = _mm256_add_epi32(lo[j], _mm256_madd_epi16(w_lo, av));
      hi[j] = _mm256_add_epi32(hi[j], _mm256_madd_epi16(w_hi, av));
    }
  }
  for (int j = 0; j < MT; ++j) d[j] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[j], hi[j]), 0xD8);
}

// W8A8, INT4 codes: per group the blocks' sums, then scaled into out.
template <int MT>
XQ_AVX2 void int4_half(const uint8_t* panel, int half, const float* ps, const int8_t* a, int64_t lda,
                       const int64_t* bb, int64_t G, float* out) {
  for (int64_t g = 0; g < G; ++g) {
    __m256i acc[MT], d[MT];
    for (int j = 0; j < MT; ++j) acc[j] = _mm256_setzero_si256();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      int4_block<MT>(panel, half, a, lda, b, d);
      for (int j = 0; j < MT; ++j) acc[j] = _mm256_add_epi32(acc[j], d[j]);
    }
    for (int j = 0; j < MT; ++j) add_scaled(out + j * kPanelRows, ps + g * kPanelRows, half, acc[j]);
  }
}

// W8A8, INT8 codes: per group the words' sums less 128 * the group's
// activation sum.
template <int MT>
XQ_AVX2 void int8_half(const uint8_t* panel, int half, const float* ps, const int16_t* a16, int64_t lda16,
                       const int32_t* asum, const int64_t* bb, int64_t G, float* out) {
  for (int64_t g = 0; g < G; ++g) {
    __m256i d[MT];
    int8_words<MT>(panel, half, a16, lda16, bb[g] * (kBlock / 4), bb[g + 1] * (kBlock / 4), d);
    for (int j = 0; j < MT; ++j)
      add_scaled(out + j * kPanelRows, ps + g * kPanelRows, half,
                 _mm256_sub_epi32(d[j], _mm256_set1_epi32(128 * asum[j * G + g])));
  }
}

// Weight-only with q8 activations: every block's exact sum (less offset *
// the block's activation sum when bsum is set) scaled by s_g * sa_b into a
// float total per row lane, block after block as the scalar dot*_q8 add.
template <int MT>
XQ_AVX2 void q8_half(const uint8_t* panel, int half, const float* ps, const float* pm, const float* am, const int8_t* a,
                     int64_t lda, const int16_t* a16, int64_t lda16, const float* sa, int64_t ldsa,
                     const int32_t* bsum, int32_t offset, const int64_t* bb, int64_t G, float* out) {
  __m256 tot[MT];
  for (int j = 0; j < MT; ++j) tot[j] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    const __m256 sv = _mm256_loadu_ps(ps + g * kPanelRows + kHalfRows * half);
    const __m256 mv = pm ? _mm256_loadu_ps(pm + g * kPanelRows + kHalfRows * half) : _mm256_setzero_ps();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      __m256i d[MT];
      if (a16) int8_words<MT>(panel, half, a16, lda16, b * (kBlock / 4), (b + 1) * (kBlock / 4), d);
      else int4_block<MT>(panel, half, a, lda, b, d);
      for (int j = 0; j < MT; ++j) {
        if (bsum) d[j] = _mm256_sub_epi32(d[j], _mm256_set1_epi32(offset * bsum[j * ldsa + b]));
        const __m256 scale = _mm256_mul_ps(sv, _mm256_set1_ps(sa[j * ldsa + b]));
        tot[j] = _mm256_add_ps(tot[j], _mm256_mul_ps(scale, _mm256_cvtepi32_ps(d[j])));
        if (pm) tot[j] = _mm256_sub_ps(tot[j], _mm256_mul_ps(mv, _mm256_set1_ps(am[j * ldsa + b])));
      }
    }
  }
  for (int j = 0; j < MT; ++j) _mm256_storeu_ps(out + j * kPanelRows + kHalfRows * half, tot[j]);
}

template <int MT>
XQ_AVX2 void chunk(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int16_t* a16,
                   int64_t lda16, const int32_t* asum, const int64_t* bb, int64_t G, bool int8_codes, float* out) {
  for (int half = 0; half < 2; ++half) {
    if (int8_codes) int8_half<MT>(panel, half, ps, a16, lda16, asum, bb, G, out);
    else int4_half<MT>(panel, half, ps, a, lda, bb, G, out);
  }
}

// Activation rows widened to int16 for the INT8 kernel: per pool thread,
// grown on demand (no allocation once the largest shape has been seen).
XQ_AVX2 const int16_t* widened(const int8_t* a, int64_t lda, int64_t mt, int64_t Kp) {
  thread_local std::vector<int16_t> buf;
  int16_t* out = grown(buf, mt * Kp);
  for (int64_t j = 0; j < mt; ++j)
    for (int64_t p = 0; p < Kp; p += 16)  // Kp is whole 32-column blocks
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j * Kp + p),
                          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j * lda + p))));
  return out;
}

}  // namespace

XQ_AVX2 void panel_i8_avx2(const uint8_t* panel, const float* ps, const int8_t* a, int64_t lda, const int32_t* asum,
                           int64_t mt, const int64_t* bb, int64_t G, bool int8_codes, float* out) {
  static_assert(kPanelRows == 2 * kHalfRows, "two 8-row halves per panel");
  const int64_t Kp = bb[G] * kBlock;
  const int16_t* a16 = int8_codes ? widened(a, lda, mt, Kp) : nullptr;
  std::fill(out, out + mt * kPanelRows, 0.0f);  // the reference's tot = 0, then += per group
  for (int64_t j0 = 0; j0 < mt; j0 += kMaxChunk) {
    const int64_t n = std::min<int64_t>(kMaxChunk, mt - j0);
    const int8_t* aj = a + j0 * lda;
    const int16_t* a16j = a16 ? a16 + j0 * Kp : nullptr;
    const int32_t* sj = asum + j0 * G;
    float* oj = out + j0 * kPanelRows;
    switch (n) {
      case 1: chunk<1>(panel, ps, aj, lda, a16j, Kp, sj, bb, G, int8_codes, oj); break;
      case 2: chunk<2>(panel, ps, aj, lda, a16j, Kp, sj, bb, G, int8_codes, oj); break;
      case 3: chunk<3>(panel, ps, aj, lda, a16j, Kp, sj, bb, G, int8_codes, oj); break;
      default: chunk<4>(panel, ps, aj, lda, a16j, Kp, sj, bb, G, int8_codes, oj); break;
    }
  }
}

XQ_AVX2 void panel_q8_avx2(const uint8_t* panel, const float* ps, const float* pm, const float* am, const int8_t* a,
                           int64_t lda, const float* sa, int64_t ldsa, const int32_t* bsum, int32_t offset, int64_t mt,
                           const int64_t* bb, int64_t G, bool int8_codes, float* out) {
  const int64_t Kp = bb[G] * kBlock;
  const int16_t* a16 = int8_codes ? widened(a, lda, mt, Kp) : nullptr;
  for (int64_t j0 = 0; j0 < mt; j0 += kMaxChunk) {
    const int64_t n = std::min<int64_t>(kMaxChunk, mt - j0);
    const int8_t* aj = a + j0 * lda;
    const int16_t* a16j = a16 ? a16 + j0 * Kp : nullptr;
    const float* saj = sa + j0 * ldsa;
    const int32_t* bsj = bsum ? bsum + j0 * ldsa : nullptr;
    const float* amj = am ? am + j0 * ldsa : nullptr;
    float* oj = out + j0 * kPanelRows;
    for (int half = 0; half < 2; ++half) switch (n) {
        case 1: q8_half<1>(panel, half, ps, pm, amj, aj, lda, a16j, Kp, saj, ldsa, bsj, offset, bb, G, oj); break;
        case 2: q8_half<2>(panel, half, ps, pm, amj, aj, lda, a16j, Kp, saj, ldsa, bsj, offset, bb, G, oj); break;
        case 3: q8_half<3>(panel, half, ps, pm, amj, aj, lda, a16j, Kp, saj, ldsa, bsj, offset, bb, G, oj); break;
        default: q8_half<4>(panel, half, ps, pm, amj, aj, lda, a16j, Kp, saj, ldsa, bsj, offset, bb, G, oj); break;
      }
  }
}

// The panel of pack_panel_i8_scalar, built a 4-column word at a time: an INT8
// word is the row's 4 code bytes xor 0x80 (code + 128); an INT4 word t of a
// block is the low nibbles of bytes 4t..4t+3 (t < 4) or the high nibbles of
// bytes 4(t - 4)..4(t - 4) + 3, the codes' layout in qkernels.hpp.
void pack_panel_i8_words(const uint8_t* codes, int64_t row_bytes, bool int4, const float* s, int64_t G, int64_t Kp,
                         int64_t n0, int64_t nr, uint8_t* panel, float* ps) {
  const uint32_t missing = int4 ? 0x08080808u : 0x80808080u;  // code 0
  for (int64_t q = 0; q < Kp / 4; ++q) {
    const int64_t b = q / (kBlock / 4), t = q % (kBlock / 4);
    const int64_t src = int4 ? b * 16 + 4 * (t % 4) : q * 4;
    for (int64_t i = 0; i < kPanelRows; ++i) {
      uint32_t w = missing;
      if (i < nr) {
        std::memcpy(&w, codes + (n0 + i) * row_bytes + src, 4);
        w = !int4 ? w ^ 0x80808080u : t < 4 ? w & 0x0F0F0F0Fu : (w >> 4) & 0x0F0F0F0Fu;
      }
      std::memcpy(panel + (q * kPanelRows + i) * 4, &w, 4);
    }
  }
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < kPanelRows; ++i) ps[g * kPanelRows + i] = i < nr ? s[(n0 + i) * G + g] : 0.0f;
}

}  // namespace xquant::cpu
