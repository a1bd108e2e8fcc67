// qgemv_rows8_avx512.cpp: the eight-row 4-bit decode GEMVs with AVX-512
// VNNI's vpdpbusd on 256-bit vectors (u8 nibbles x s8 activation codes, four
// products into each int32 lane): the cpu.int-blocks INT4 rows of
// qgemv_rows8.hpp (qgemv_rows8.inc) and GGUF Q4_0 (gguf_q4_0_rows8.inc),
// both on the register transpose of rows8_nibbles.inc or their interleaved
// copies, and GGUF Q4_1 / Q5_0 / Q5_1 on theirs (gguf_legacy_rows8.inc).
// 256-bit and not 512-bit vectors: this project's AMD EPYC (Zen 4) splits 512-bit operations
// in two (gguf_gemv_rows_avx512.cpp measured it). Dispatch hands these out
// only when the CPU has avx512f, bw, vl and vnni (and F16C for Q4_0's scales).
#include "gguf_gemv_rows.hpp"
#include "qgemv_rows8.hpp"

#include "stream_prefetch.hpp"

#include <immintrin.h>

#include <cstring>

#define XQ_ROWS8 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

#include "rows8_nibbles.inc"

// One block of eight rows: u[2k] holds columns 4k..4k+3, u[2k+1] columns
// 16+4k..16+4k+3 of row j in lane j.
XQ_ROWS8 inline __m256i block_dot(const __m256i u[8], const int8_t* q) {
  __m256i p = _mm256_setzero_si256();
  for (int k = 0; k < 4; ++k) {
    p = _mm256_dpbusd_epi32(p, u[2 * k], act4(q + 4 * k));
    p = _mm256_dpbusd_epi32(p, u[2 * k + 1], act4(q + 16 + 4 * k));
  }
  return p;
}

// vpdpbusd takes unsigned codes up to 255: Q5's 5-bit codes need no dot of
// their own (gguf_legacy_rows8.inc).
XQ_ROWS8 inline __m256i block_dot_5bit(const __m256i u[8], const int8_t* q) { return block_dot(u, q); }

// Q5_0 / Q5_1 code vector u with its fifth bits: 16 added to the bytes whose
// bit is set in the 32-bit mask at `mask` (interleave_legacy_rows8's masks;
// one merge-masked vpaddb).
XQ_ROWS8 inline __m256i with_fifth_bits(__m256i u, const uint8_t* mask) {
  uint32_t m;
  std::memcpy(&m, mask, 4);
  return _mm256_mask_add_epi8(u, static_cast<__mmask32>(m), u, _mm256_set1_epi8(16));
}

const BlockKernels& one_row_blocks() { return kAvx512BlockKernels; }

void one_row_gemv4(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  kAvx512GemvRows.gemv4(w, a, n0, n1, y);
}

void one_row_q4_0(const uint8_t* w, uint64_t row_bytes, int64_t rows, const QuantizedRow& a, int64_t nb, float* y,
                  const float* bias) {
  kAvx512Q4_0Rows(w, row_bytes, rows, a, nb, y, bias);
}

#include "qgemv_rows8.inc"
#include "gguf_q4_0_rows8.inc"
#include "gguf_legacy_rows8.inc"

}  // namespace

void gemv4_rows8_avx512(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  gemv4_rows8(w, a, n0, n1, y);
}

void gemv4_rows8_interleaved_avx512(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  gemv4_rows8_interleaved(w, a, n0, n1, y);
}

extern const BlockRowsKernel kAvx512Q4_0Rows8 = &q4_0_rows8;
extern const BlockRows8Kernel kAvx512Q4_0Rows8i = &q4_0_rows8_interleaved;
extern const BlockRows8Kernel kAvx512Q4_1Rows8i = &legacy_rows8_interleaved<3>;  // ggml type ids
extern const BlockRows8Kernel kAvx512Q5_0Rows8i = &legacy_rows8_interleaved<6>;
extern const BlockRows8Kernel kAvx512Q5_1Rows8i = &legacy_rows8_interleaved<7>;

}  // namespace xquant::cpu
