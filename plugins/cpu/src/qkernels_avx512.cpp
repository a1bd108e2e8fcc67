// qkernels_avx512.cpp: the AVX-512 kernels (F + BW + VL + VNNI). Float paths
// use 512-bit FMAs (16 columns per instruction); integer paths use VNNI's
// vpdpbusd (u8 x s8, four products summed into int32 without intermediate
// saturation) on 512-bit vectors, two 32-column blocks per instruction (an
// odd last block on 256 bits).
// Signed INT8 codes become unsigned by adding 128 (xor 0x80); the extra
// 128 * sum(a) is computed with a second vpdpbusd and subtracted, so every
// integer result is exact. Per-function target attributes, as in
// qkernels_avx2.cpp; dispatch hands this table out only when the CPU has all
// four features.
#include "qkernels.hpp"

#include <immintrin.h>

#define XQ_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

XQ_AVX512 inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

XQ_AVX512 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Exact int32 lanes of one block, sum u * a.
XQ_AVX512 inline __m256i block4_i8(const uint8_t* w, const int8_t* a) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), unpack_nibbles(w), load256(a));
}

// Exact int32 lanes of one block, sum c * a: (c + 128) * a - 128 * a.
XQ_AVX512 inline __m256i block8_i8(const int8_t* w, const int8_t* a) {
  const __m256i c80 = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i av = load256(a);
  __m256i pos = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(load256(w), c80), av);
  return _mm256_sub_epi32(pos, _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80, av));
}

// Two blocks per step into four accumulators: one chain per 16 columns
// took one dependent FMA per block (4 cycles of latency per 32 weights).
XQ_AVX512 float dot4_f32(const uint8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s) {
  const __m128i m = _mm_set1_epi8(0x0F);
  __m512 tot = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t b = bb[g];
    for (; b + 1 < bb[g + 1]; b += 2) {
      const float* xb = x + b * kBlock;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * 16));
      const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * 16 + 16));
      a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v, m))), _mm512_loadu_ps(xb), a0);
      a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), m))),
                           _mm512_loadu_ps(xb + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v1, m))), _mm512_loadu_ps(xb + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v1, 4), m))),
                           _mm512_loadu_ps(xb + 48), a3);
    }
    if (b < bb[g + 1]) {
      const float* xb = x + b * kBlock;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * 16));
      a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v, m))), _mm512_loadu_ps(xb), a0);
      a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), m))),
                           _mm512_loadu_ps(xb + 16), a1);
    }
    tot = _mm512_fmadd_ps(_mm512_set1_ps(s[g]), _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), tot);
  }
  return _mm512_reduce_add_ps(tot);
}

XQ_AVX512 float dot8_f32(const int8_t* w, const float* x, const int64_t* bb, int64_t G, const float* s) {
  __m512 tot = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t b = bb[g];
    for (; b + 1 < bb[g + 1]; b += 2) {
      const float* xb = x + b * kBlock;
      const int8_t* wb = w + b * kBlock;
      a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb)))),
                           _mm512_loadu_ps(xb), a0);
      a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 16)))),
                           _mm512_loadu_ps(xb + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 32)))),
                           _mm512_loadu_ps(xb + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 48)))),
                           _mm512_loadu_ps(xb + 48), a3);
    }
    if (b < bb[g + 1]) {
      const float* xb = x + b * kBlock;
      const int8_t* wb = w + b * kBlock;
      a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb)))),
                           _mm512_loadu_ps(xb), a0);
      a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + 16)))),
                           _mm512_loadu_ps(xb + 16), a1);
    }
    tot = _mm512_fmadd_ps(_mm512_set1_ps(s[g]), _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)), tot);
  }
  return _mm512_reduce_add_ps(tot);
}

// Two consecutive INT4 blocks (32 packed bytes) -> 64 unsigned nibbles in
// column order: 128-bit lanes [low b, high b, low b+1, high b+1].
XQ_AVX512 inline __m512i unpack_nibbles2(const uint8_t* p) {
  const __m256i v = load256(p);
  const __m256i m = _mm256_set1_epi8(0x0F);
  const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m)),
                                       _mm256_and_si256(_mm256_srli_epi16(v, 4), m), 1);
  return _mm512_shuffle_i64x2(u, u, _MM_SHUFFLE(3, 1, 2, 0));
}

// Exact int32 lanes of two blocks (lanes 0..7 block b, 8..15 block b + 1).
XQ_AVX512 inline __m512i block4_i8x2(const uint8_t* w, const int8_t* a) {
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), unpack_nibbles2(w), _mm512_loadu_si512(a));
}
XQ_AVX512 inline __m512i block8_i8x2(const int8_t* w, const int8_t* a) {
  const __m512i c80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i av = _mm512_loadu_si512(a);
  __m512i pos = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(_mm512_loadu_si512(w), c80), av);
  return _mm512_sub_epi32(pos, _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, av));
}

// The two blocks' activation scales, one per 256-bit half.
XQ_AVX512 inline __m512 scales2(const float* sa) {
  return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(sa[0]), _mm512_set1_ps(sa[1]));
}

// Integer per-token paths: pairs of blocks within a group on 512 bits, an
// odd last block on 256 bits, the group's exact int32 sum reduced before it
// is scaled, in the scalar reference's order, so W8A8 results are bit-equal
// to it (a float-order difference would flip later int8 activation roundings).
XQ_AVX512 float dot4_i8(const uint8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    __m512i d = _mm512_setzero_si512();
    int64_t b = bb[g];
    for (; b + 2 <= bb[g + 1]; b += 2)
      d = _mm512_dpbusd_epi32(d, unpack_nibbles2(w + b * 16), _mm512_loadu_si512(a + b * kBlock));
    if (b < bb[g + 1]) d = _mm512_add_epi32(d, _mm512_zextsi256_si512(block4_i8(w + b * 16, a + b * kBlock)));
    tot += s[g] * static_cast<float>(_mm512_reduce_add_epi32(d));
  }
  return tot;
}

XQ_AVX512 float dot8_i8(const int8_t* w, const int8_t* a, const int64_t* bb, int64_t G, const float* s) {
  float tot = 0.0f;
  for (int64_t g = 0; g < G; ++g) {
    __m512i d = _mm512_setzero_si512();
    int64_t b = bb[g];
    for (; b + 2 <= bb[g + 1]; b += 2) d = _mm512_add_epi32(d, block8_i8x2(w + b * kBlock, a + b * kBlock));
    if (b < bb[g + 1]) d = _mm512_add_epi32(d, _mm512_zextsi256_si512(block8_i8(w + b * kBlock, a + b * kBlock)));
    tot += s[g] * static_cast<float>(_mm512_reduce_add_epi32(d));
  }
  return tot;
}

XQ_AVX512 float dot4_q8(const uint8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s) {
  __m512 tot = _mm512_setzero_ps();
  __m256 tail = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    const __m512 sg = _mm512_set1_ps(s[g]);
    int64_t b = bb[g];
    for (; b + 2 <= bb[g + 1]; b += 2)
      tot = _mm512_fmadd_ps(_mm512_mul_ps(sg, scales2(sa + b)), _mm512_cvtepi32_ps(block4_i8x2(w + b * 16, a + b * kBlock)), tot);
    if (b < bb[g + 1])
      tail = _mm256_fmadd_ps(_mm256_set1_ps(s[g] * sa[b]), _mm256_cvtepi32_ps(block4_i8(w + b * 16, a + b * kBlock)), tail);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(tot, _mm512_zextps256_ps512(tail)));
}

XQ_AVX512 float dot8_q8(const int8_t* w, const int8_t* a, const float* sa, const int64_t* bb, int64_t G, const float* s) {
  __m512 tot = _mm512_setzero_ps();
  __m256 tail = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    const __m512 sg = _mm512_set1_ps(s[g]);
    int64_t b = bb[g];
    for (; b + 2 <= bb[g + 1]; b += 2)
      tot = _mm512_fmadd_ps(_mm512_mul_ps(sg, scales2(sa + b)),
                            _mm512_cvtepi32_ps(block8_i8x2(w + b * kBlock, a + b * kBlock)), tot);
    if (b < bb[g + 1])
      tail = _mm256_fmadd_ps(_mm256_set1_ps(s[g] * sa[b]),
                             _mm256_cvtepi32_ps(block8_i8(w + b * kBlock, a + b * kBlock)), tail);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(tot, _mm512_zextps256_ps512(tail)));
}

// Prefill tiles: dot4_q8 / dot8_q8 for 4 weight rows x 2 activation rows at
// once, each pair with its own 512-bit and tail accumulators and the very
// operations of the pair dot, so every output is bit-identical to it. Per
// pair of blocks the activations are loaded once, each weight row's nibbles
// unpacked once; for INT8 the 128 * sum(a) correction is computed once per
// activation block instead of once per weight row (integer, so exact).
XQ_AVX512 void tile4_q8(const uint8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                        int64_t ldsa, const int64_t* bb, int64_t G, float* out) {
  static_assert(kTileRows == 4 && kTileCols == 2, "tile4_q8 is written for 4 x 2 tiles");
  __m512 tot[4][2];
  __m256 tail[4][2];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) tot[i][j] = _mm512_setzero_ps(), tail[i][j] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    int64_t b = bb[g];
    for (; b + 2 <= bb[g + 1]; b += 2) {
      const __m512i a0 = _mm512_loadu_si512(a + b * kBlock), a1 = _mm512_loadu_si512(a + lda + b * kBlock);
      const __m512 sa0 = scales2(sa + b), sa1 = scales2(sa + ldsa + b);
      for (int i = 0; i < 4; ++i) {
        const __m512i u = unpack_nibbles2(w + i * ldw + b * 16);
        const __m512 sg = _mm512_set1_ps(s[i * G + g]);
        tot[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(sg, sa0),
                                    _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a0)), tot[i][0]);
        tot[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(sg, sa1),
                                    _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a1)), tot[i][1]);
      }
    }
    if (b < bb[g + 1]) {
      const __m256i a0 = load256(a + b * kBlock), a1 = load256(a + lda + b * kBlock);
      for (int i = 0; i < 4; ++i) {
        const __m256i u = unpack_nibbles(w + i * ldw + b * 16);
        const float sg = s[i * G + g];
        tail[i][0] = _mm256_fmadd_ps(_mm256_set1_ps(sg * sa[b]),
                                     _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a0)), tail[i][0]);
        tail[i][1] = _mm256_fmadd_ps(_mm256_set1_ps(sg * sa[ldsa + b]),
                                     _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a1)), tail[i][1]);
      }
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      out[i * 2 + j] = _mm512_reduce_add_ps(_mm512_add_ps(tot[i][j], _mm512_zextps256_ps512(tail[i][j])));
}

XQ_AVX512 void tile8_q8(const int8_t* w, int64_t ldw, const float* s, const int8_t* a, int64_t lda, const float* sa,
                        int64_t ldsa, const int64_t* bb, int64_t G, float* out) {
  static_assert(kTileRows == 4 && kTileCols == 2, "tile8_q8 is written for 4 x 2 tiles");
  const __m512i c80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m256i c80h = _mm256_set1_epi8(static_cast<char>(0x80));
  __m512 tot[4][2];
  __m256 tail[4][2];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) tot[i][j] = _mm512_setzero_ps(), tail[i][j] = _mm256_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    int64_t b = bb[g];
    for (; b + 2 <= bb[g + 1]; b += 2) {
      const __m512i a0 = _mm512_loadu_si512(a + b * kBlock), a1 = _mm512_loadu_si512(a + lda + b * kBlock);
      const __m512i k0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, a0);
      const __m512i k1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c80, a1);
      const __m512 sa0 = scales2(sa + b), sa1 = scales2(sa + ldsa + b);
      for (int i = 0; i < 4; ++i) {
        const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(w + i * ldw + b * kBlock), c80);
        const __m512 sg = _mm512_set1_ps(s[i * G + g]);
        const __m512i d0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a0), k0);
        const __m512i d1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a1), k1);
        tot[i][0] = _mm512_fmadd_ps(_mm512_mul_ps(sg, sa0), _mm512_cvtepi32_ps(d0), tot[i][0]);
        tot[i][1] = _mm512_fmadd_ps(_mm512_mul_ps(sg, sa1), _mm512_cvtepi32_ps(d1), tot[i][1]);
      }
    }
    if (b < bb[g + 1]) {
      const __m256i a0 = load256(a + b * kBlock), a1 = load256(a + lda + b * kBlock);
      const __m256i k0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80h, a0);
      const __m256i k1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80h, a1);
      for (int i = 0; i < 4; ++i) {
        const __m256i u = _mm256_xor_si256(load256(w + i * ldw + b * kBlock), c80h);
        const float sg = s[i * G + g];
        const __m256i d0 = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a0), k0);
        const __m256i d1 = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a1), k1);
        tail[i][0] = _mm256_fmadd_ps(_mm256_set1_ps(sg * sa[b]), _mm256_cvtepi32_ps(d0), tail[i][0]);
        tail[i][1] = _mm256_fmadd_ps(_mm256_set1_ps(sg * sa[ldsa + b]), _mm256_cvtepi32_ps(d1), tail[i][1]);
      }
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      out[i * 2 + j] = _mm512_reduce_add_ps(_mm512_add_ps(tot[i][j], _mm512_zextps256_ps512(tail[i][j])));
}

}  // namespace

const QKernels kAvx512Kernels{"avx512", &dot4_f32, &dot8_f32, &dot4_i8, &dot8_i8, &dot4_q8, &dot8_q8,
                              &tile4_q8, &tile8_q8, &dot8_i8};

}  // namespace xquant::cpu
