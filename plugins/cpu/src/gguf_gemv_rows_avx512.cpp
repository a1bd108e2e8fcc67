// gguf_gemv_rows_avx512.cpp: the row-range Q4_0 / Q8_0 decode GEMVs of
// gguf_gemv_rows.hpp on AVX-512 VNNI (F + BW + VL + VNNI, and F16C for the
// scales). Per pair of 32-column blocks: the codes unpacked to 64 unsigned
// bytes, one vpdpbusd against the activation codes, one conversion, one
// FMA by the two blocks' combined scales; per row the scales are formed
// sixteen blocks at a time and the code offset is one float dot product.
// Dispatch hands these out only when the CPU has all of those features.
#include "gguf_gemv_rows.hpp"

#include <immintrin.h>

#include <cstring>
#include <vector>

#define XQ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

// Q4_0: {f16 d; uint8 qs[16]} (ggml-common.h block_q4_0), element i in the
// low nibble of qs[i], element 16 + i in its high nibble.
struct Q4_0 {
  static constexpr int64_t kBytes = 18;
  static constexpr float kOffset = 8.0f;
  // Blocks b and b + 1 -> 64 unsigned codes in element order.
  XQ_AVX512 static __m512i codes2(const uint8_t* blk) {
    const __m256i v = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + kBytes + 2)),
                                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
    const __m256i m = _mm256_set1_epi8(0x0F);
    // [low b, low b+1, high b, high b+1] -> [low b, high b, low b+1, high b+1]
    const __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m)),
                                         _mm256_and_si256(_mm256_srli_epi16(v, 4), m), 1);
    return _mm512_shuffle_i64x2(u, u, _MM_SHUFFLE(3, 1, 2, 0));
  }
  XQ_AVX512 static __m512i codes1(const uint8_t* blk) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm512_inserti64x4(_mm512_setzero_si512(),
                              _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m)), 0);
  }
};

// Q8_0: {f16 d; int8 qs[32]} (block_q8_0); codes + 128 are unsigned.
struct Q8_0 {
  static constexpr int64_t kBytes = 34;
  static constexpr float kOffset = 128.0f;
  XQ_AVX512 static __m512i codes2(const uint8_t* blk) {
    const __m512i v = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kBytes + 2)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  XQ_AVX512 static __m512i codes1(const uint8_t* blk) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    return _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))), 0);
  }
};

// Per-thread buffers, grown on demand (no allocation once warm).
struct RowsScratch {
  std::vector<uint16_t> h;   // a row's f16 scales, padded to 16
  std::vector<float> ds;     // dw[b] * da[b] of the row
  std::vector<float> off;    // offset * da[b] * sum32[b] of the activation row
};
RowsScratch& rows_scratch() {
  thread_local RowsScratch s;
  return s;
}

template <class T>
XQ_AVX512 void gemv_rows(const uint8_t* w, uint64_t row_bytes, int64_t rows, const QuantizedRow& a, int64_t nb,
                         float* y, const float* bias) {
  RowsScratch& sc = rows_scratch();
  const int64_t nb16 = (nb + 15) / 16 * 16;
  if (static_cast<int64_t>(sc.h.size()) < nb16) sc.h.assign(static_cast<size_t>(nb16), 0), sc.ds.resize(nb16), sc.off.resize(nb16);
  uint16_t* h = sc.h.data();
  float* ds = sc.ds.data();
  float* off = sc.off.data();
  for (int64_t b = 0; b < nb; ++b) off[b] = T::kOffset * a.d32[b] * static_cast<float>(a.sum32[b]);
  for (int64_t b = nb; b < nb16; ++b) off[b] = 0.0f, h[b] = 0;
  // Lanes 0..7 take the first of two consecutive scales, 8..15 the second.
  const __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w + static_cast<uint64_t>(r) * row_bytes;
    for (int64_t b = 0; b < nb; ++b) std::memcpy(h + b, row + b * T::kBytes, 2);
    __m512 corr = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb16; b += 16) {
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + b)));
      corr = _mm512_fmadd_ps(dw, _mm512_loadu_ps(off + b), corr);
      const __mmask16 live = nb - b >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (nb - b)) - 1);
      _mm512_storeu_ps(ds + b, _mm512_mul_ps(dw, _mm512_maskz_loadu_ps(live, a.d32 + b)));
    }
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
      const __m512i p0 = _mm512_dpbusd_epi32(zero, T::codes2(row + b * T::kBytes), _mm512_loadu_si512(a.q + b * 32));
      const __m512i p1 =
          _mm512_dpbusd_epi32(zero, T::codes2(row + (b + 2) * T::kBytes), _mm512_loadu_si512(a.q + (b + 2) * 32));
      const __m512 s0 = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(ds + b)))));
      const __m512 s1 = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(ds + b + 2)))));
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), s0, acc0);
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), s1, acc1);
    }
    for (; b + 2 <= nb; b += 2) {
      const __m512i p = _mm512_dpbusd_epi32(zero, T::codes2(row + b * T::kBytes), _mm512_loadu_si512(a.q + b * 32));
      const __m512 s = _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(ds + b)))));
      acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc0);
    }
    if (b < nb) {  // an odd last block on the low 256 bits
      const __m512i p = _mm512_dpbusd_epi32(zero, T::codes1(row + b * T::kBytes),
                                            _mm512_maskz_loadu_epi32(0x00FF, a.q + b * 32));
      acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_maskz_mov_ps(0x00FF, _mm512_set1_ps(ds[b])), acc1);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - _mm512_reduce_add_ps(corr) + (bias ? bias[r] : 0.0f);
  }
}

}  // namespace

BlockRowsKernel block_rows_kernel(Isa isa, uint32_t type) {
  if (isa != Isa::avx512) return nullptr;
  switch (type) {
    case 2: return &gemv_rows<Q4_0>;  // ggml type ids (ggml.h GGML_TYPE_Q4_0, _Q8_0), as block_kernel
    case 8: return &gemv_rows<Q8_0>;
  }
  return nullptr;
}

}  // namespace xquant::cpu
