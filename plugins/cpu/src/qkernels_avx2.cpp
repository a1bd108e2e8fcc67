// qkernels_avx2.cpp: the AVX2 + FMA kernels. Every function carries its own
// target attribute (no per-file -mavx2), so nothing here can leak AVX2 code
// into functions an AVX-less CPU would run; dispatch (qkernels_dispatch.cpp)
// only hands this table out when the CPU reports avx2 and fma.
//
// The integer INT4 path follows llama.cpp's ggml_vec_dot_q4_0_q8_0 for AVX2
// (ggml-cpu/arch/x86/quants.c): nibbles widened to 32 bytes, then
// _mm256_maddubs_epi16 (u8 x s8, pairs; 2 * 15 * 128 cannot saturate) and
// _mm256_madd_epi16 against ones. INT8 codes are signed on both sides, where
// maddubs could saturate, so they are widened to int16 and use madd_epi16,
// except in dot8_i8's form for activations within [-127, 127]
// (block8_i8_a127: the sign trick, which cannot saturate there).
#include "qkernels.hpp"

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

XQ_AVX2 inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// 16 packed bytes -> 32 unsigned nibbles in column order (low lane: columns 0..15).
XQ_AVX2 inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

// Exact int32 lanes of one block: sum u * a (u unsigned nibbles).
XQ_AVX2 inline __m256i block4_i8(const uint8_t* w, const int8_t* a) {
  __m256i p = _mm256_maddubs_epi16(unpack_nibbles(w), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

XQ_AVX2 inline __m256i widen16(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Exact int32 lanes of one block: sum c * a (both signed int8, any values).
XQ_AVX2 inline __m256i block8_i8(const int8_t* w, const int8_t* a) {
  return _mm256_add_epi32(_mm256_madd_epi16(widen16(w), widen16(a)),
                          _mm256_madd_epi16(widen16(w + 16), widen16(a + 16)));
}

// The same lanes when |a| <= 127 (dynamic per-token and per-block
// activation codes; a static scale may give -128), with the sign trick of
// llama.cpp's mul_sum_i8_pairs_float (ggml-cpu/arch/x86/quants.c): |c|
// unsigned times a with c's sign moved onto it, a pair at most 2 * 128 *
// 127, so vpmaddubsw cannot saturate. Its lanes hold other columns than
// block8_i8's (4i..4i+3, not 2i, 2i+1, 16+2i, 17+2i): only for dot products
// summed in int32 before any rounding (dot8_i8), not for dot8_q8, whose
// float lanes the tiles reproduce bit for bit. Four vector operations a
// block instead of four sign extensions, two vpmaddwd and an add: SmolLM2
// W8A8 decode at one thread 44.6 -> 58.0 tok/s with the stream prefetch
// (2026-12-02, AVX2; docs/engine.md, "Stream prefetch and the INT8 sign
// trick").
XQ_AVX2 inline __m256i block8_i8_a127(const int8_t* w, const int8_t* a) {
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(q, c)),
                           _mm256_set1_epi16(1));
}

// Four accumulators, one per 8-column quarter of a block: with two, each
// took two dependent FMAs per block (8 cycles of latency per 32 weights).
XQ_AVX2 float dot4_f32(const uint8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s) {
  const __m128i m = _mm_set1_epi8(0x0F);
  __m256 tot = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      const float* xb = x + b * kBlock;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * 16));
      const __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(xb), a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(xb + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(xb + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(xb + 24), a3);
    }
    tot = _mm256_fmadd_ps(_mm256_set1_ps(s[g]), _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), tot);
  }
  return hsum(tot);
}

XQ_AVX2 float dot8_f32(const int8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s) {
  __m256 tot = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      const float* xb = x + b * kBlock;
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * kBlock));
      const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(xb), a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(xb + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(xb + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(xb + 24), a3);
    }
    tot = _mm256_fmadd_ps(_mm256_set1_ps(s[g]), _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), tot);
  }
  return hsum(tot);
}

XQ_AVX2 float dot4_i8(const uint8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    __m256i d = _mm256_setzero_si256();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) d = _mm256_add_epi32(d, block4_i8(w + b * 16, a + b * kBlock));
    tot += s[g] * static_cast<float>(hsum(d));
  }
  return tot;
}

template <bool kA127>
XQ_AVX2 float dot8_i8(const int8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    __m256i d = _mm256_setzero_si256();
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      if (!(b & 1)) prefetch_stream(w + b * kBlock);  // one cache line per two blocks
      d = _mm256_add_epi32(d, kA127 ? block8_i8_a127(w + b * kBlock, a + b * kBlock)
                                    : block8_i8(w + b * kBlock, a + b * kBlock));
    }
    tot += s[g] * static_cast<float>(hsum(d));
  }
  return tot;
}

XQ_AVX2 float dot4_q8(const uint8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s) {
  __m256 tot = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b)
      tot = _mm256_fmadd_ps(_mm256_set1_ps(s[g] * sa[b]), _mm256_cvtepi32_ps(block4_i8(w + b * 16, a + b * kBlock)), tot);
  return hsum(tot);
}

XQ_AVX2 float dot8_q8(const int8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s) {
  __m256 tot = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b)
      tot = _mm256_fmadd_ps(_mm256_set1_ps(s[g] * sa[b]),
                            _mm256_cvtepi32_ps(block8_i8(w + b * kBlock, a + b * kBlock)), tot);
  return hsum(tot);
}

// Prefill tiles: per block, the two activation blocks are loaded (INT8:
// widened) once and every weight row's block unpacked once, feeding eight
// accumulators, one per (weight row, activation row) pair. Each pair's
// arithmetic is dot4_q8's (dot8_q8's), in the same order.
XQ_AVX2 void tile4_q8(const uint8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                      int64_t ldsa, const int64_t* bb, int64_t G, float* out) {
  static_assert(kTileRows == 4 && kTileCols == 2, "tile4_q8 is written for 4 x 2 tiles");
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4][2];
  for (auto& r : acc) r[0] = r[1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + b * kBlock));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + lda + b * kBlock));
      const float sa0 = sa[b], sa1 = sa[ldsa + b];
      for (int i = 0; i < 4; ++i) {
        const __m256i u = unpack_nibbles(w + i * ldw + b * 16);
        const float si = s[i * G + g];
        const __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(u, a0), ones);
        const __m256i d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(u, a1), ones);
        acc[i][0] = _mm256_fmadd_ps(_mm256_set1_ps(si * sa0), _mm256_cvtepi32_ps(d0), acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(_mm256_set1_ps(si * sa1), _mm256_cvtepi32_ps(d1), acc[i][1]);
      }
    }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) out[i * 2 + j] = hsum(acc[i][j]);
}

XQ_AVX2 void tile8_q8(const int8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                      int64_t ldsa, const int64_t* bb, int64_t G, float* out) {
  static_assert(kTileRows == 4 && kTileCols == 2, "tile8_q8 is written for 4 x 2 tiles");
  __m256 acc[4][2];
  for (auto& r : acc) r[0] = r[1] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
      const int8_t* a0p = a + b * kBlock;
      const int8_t* a1p = a + lda + b * kBlock;
      const __m256i a0l = widen16(a0p), a0h = widen16(a0p + 16), a1l = widen16(a1p), a1h = widen16(a1p + 16);
      const float sa0 = sa[b], sa1 = sa[ldsa + b];
      for (int i = 0; i < 4; ++i) {
        const int8_t* wb = w + i * ldw + b * kBlock;
        const __m256i wl = widen16(wb), wh = widen16(wb + 16);
        const float si = s[i * G + g];
        const __m256i d0 = _mm256_add_epi32(_mm256_madd_epi16(wl, a0l), _mm256_madd_epi16(wh, a0h));
        const __m256i d1 = _mm256_add_epi32(_mm256_madd_epi16(wl, a1l), _mm256_madd_epi16(wh, a1h));
        acc[i][0] = _mm256_fmadd_ps(_mm256_set1_ps(si * sa0), _mm256_cvtepi32_ps(d0), acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(_mm256_set1_ps(si * sa1), _mm256_cvtepi32_ps(d1), acc[i][1]);
      }
    }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) out[i * 2 + j] = hsum(acc[i][j]);
}

}  // namespace

const QKernels kAvx2Kernels{"avx2", &dot4_f32, &dot8_f32, &dot4_i8, &dot8_i8<false>, &dot4_q8, &dot8_q8, &tile4_q8, &tile8_q8,
                              &dot8_i8<true>};

}  // namespace xquant::cpu
