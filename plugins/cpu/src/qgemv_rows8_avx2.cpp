// qgemv_rows8_avx2.cpp: the eight-row 4-bit decode GEMVs with AVX2 + FMA
// (+ F16C for Q4_0's scales): the cpu.int-blocks INT4 rows of qgemv_rows8.hpp
// (qgemv_rows8.inc) and GGUF Q4_0 (gguf_q4_0_rows8.inc) on the register
// transpose of rows8_nibbles.inc or their interleaved copies, and GGUF Q4_1 /
// Q5_0 / Q5_1 on theirs (gguf_legacy_rows8.inc). A block's dot product:
// vpmaddubsw (nibble x int8 activation code pairs into int16), the block's eight results added as
// int16 (16 products of at most 15 * 127 per lane: 30480, no saturation),
// one vpmaddwd by ones into the int32 lane of each row. Dispatch hands these
// out only when the CPU has avx2 and fma (and F16C for Q4_0).
#include "gguf_blocks.hpp"
#include "gguf_gemv_rows.hpp"
#include "qgemv_rows8.hpp"

#include "stream_prefetch.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_ROWS8 __attribute__((target("avx2,fma,f16c")))

namespace xquant::cpu {
namespace {

#include "rows8_nibbles.inc"

XQ_ROWS8 inline __m256i block_dot(const __m256i u[8], const int8_t* q) {
  __m256i s = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u[2 * k], act4(q + 4 * k)));
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(u[2 * k + 1], act4(q + 16 + 4 * k)));
  }
  return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

// block_dot for Q5's codes (up to 31, gguf_legacy_rows8.inc): a vpmaddubsw
// pair reaches 2 * 31 * 127 = 7874, eight of them would overflow int16, so
// two sums of four (at most 31496) are widened apart.
XQ_ROWS8 inline __m256i block_dot_5bit(const __m256i u[8], const int8_t* q) {
  __m256i s[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  for (int k = 0; k < 4; ++k) {
    s[k / 2] = _mm256_add_epi16(s[k / 2], _mm256_maddubs_epi16(u[2 * k], act4(q + 4 * k)));
    s[k / 2] = _mm256_add_epi16(s[k / 2], _mm256_maddubs_epi16(u[2 * k + 1], act4(q + 16 + 4 * k)));
  }
  const __m256i ones = _mm256_set1_epi16(1);
  return _mm256_add_epi32(_mm256_madd_epi16(s[0], ones), _mm256_madd_epi16(s[1], ones));
}

// Q5_0 / Q5_1 code vector u with its fifth bits: 16 ORed into the bytes whose
// bit is set in the 32-bit mask at `mask` (interleave_legacy_rows8's masks),
// each bit spread to its byte as ggml's bytes_from_bits_32 does
// (ggml-cpu/arch/x86/quants.c): byte i takes mask byte i / 8, ORed with all
// bits but bit i % 8, equals 0xFF exactly when that bit is set.
XQ_ROWS8 inline __m256i with_fifth_bits(__m256i u, const uint8_t* mask) {
  uint32_t m;
  std::memcpy(&m, mask, 4);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(m)),
                                             _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                                                0x0202020202020202, 0x0303030303030303));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)),
                                        _mm256_set1_epi64x(-1));
  return _mm256_or_si256(u, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

const BlockKernels& one_row_blocks() { return kAvx2BlockKernels; }

void one_row_gemv4(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  kAvx2GemvRows.gemv4(w, a, n0, n1, y);
}

// AVX2 has no one-row Q4_0 range kernel: the per-row block kernel.
void one_row_q4_0(const uint8_t* w, uint64_t row_bytes, int64_t rows, const QuantizedRow& a, int64_t nb, float* y,
                  const float* bias) {
  for (int64_t r = 0; r < rows; ++r)
    y[r] = kAvx2BlockKernels.q4_0(w + static_cast<uint64_t>(r) * row_bytes, a, nb) + (bias ? bias[r] : 0.0f);
}

#include "qgemv_rows8.inc"
#include "gguf_q4_0_rows8.inc"
#include "gguf_legacy_rows8.inc"

}  // namespace

void gemv4_rows8_avx2(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  gemv4_rows8(w, a, n0, n1, y);
}

void gemv4_rows8_interleaved_avx2(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  gemv4_rows8_interleaved(w, a, n0, n1, y);
}

extern const BlockRowsKernel kAvx2Q4_0Rows8 = &q4_0_rows8;
extern const BlockRows8Kernel kAvx2Q4_0Rows8i = &q4_0_rows8_interleaved;
extern const BlockRows8Kernel kAvx2Q4_1Rows8i = &legacy_rows8_interleaved<3>;  // ggml type ids
extern const BlockRows8Kernel kAvx2Q5_0Rows8i = &legacy_rows8_interleaved<6>;
extern const BlockRows8Kernel kAvx2Q5_1Rows8i = &legacy_rows8_interleaved<7>;

}  // namespace xquant::cpu
