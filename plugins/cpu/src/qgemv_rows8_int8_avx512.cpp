// qgemv_rows8_int8_avx512.cpp: the eight-row INT8 decode GEMVs on AVX-512
// VNNI (vpdpbusd on 256-bit vectors), on the interleaved copies of
// qgemv_rows8.hpp (interleave_int8_rows8, interleave_q8_0_rows8): 256 bytes
// per 32-column block of eight rows, word k the columns 4k..4k+3 of row j in
// int32 lane j, codes already unsigned (+ 128). Per block: eight one-
// stream loads, eight vpdpbusd against four activation codes broadcast, and
// for all eight rows at once the offset (128 times the block's activation
// code sum), the conversion and the scale; no per-row scalar work, no
// horizontal sums (llama.cpp's repacked Q4_0 x8 idea, ggml-cpu/repack.cpp,
// for 8-bit codes).
//
// Why: the one-row kernels pay a scalar f16 conversion, a broadcast and a
// horizontal sum per row: on this project's Intel Xeon (bench_gemv_rows, one
// thread, 2026-12-04) the AVX-512 one-row Q8_0 kernel read 58-64% of the
// read loop's bandwidth and the INT8 per-channel one 75-82%, and decode of a
// GGUF Q8_0 file ran 0.90x llama.cpp's.
//
//   GGUF Q8_0 (q8_0_rows8_interleaved, a BlockRows8Kernel):
//     y[r] = sum_b d[r,b] * d32[b] * (sum_i u[r,b,i] q[b,i] - 128 sum32[b])
//   INT8 weight-only with q8 activations (gemv8_rows8_interleaved, the
//   rows8i table's gemv8): as qgemv_rows.hpp, per group
//     sum_b sa[b] * (sum_i u q - corr1[b]), times the group scale;
//   W8A8 with one activation scale per token (w8a8_rows8_interleaved): the
//   group's exact int32 dot less 128 times its activation code sum, then
//   tot += s[g] * float(dot) in group order, as the per-row dot8_i8 does
//   (qkernels_avx512.cpp), so the result is that kernel's bit for bit.
// Dispatch hands these out only when the CPU has avx512f, bw, vl and vnni
// (and F16C for the Q8_0 scales).
#include "gguf_gemv_rows.hpp"
#include "qgemv_rows8.hpp"

#include "stream_prefetch.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define XQ_ROWS8 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

#include "rows8_nibbles.inc"  // act4: four activation codes broadcast to every int32 lane

// One 256-byte block of eight rows against the block's 32 activation codes:
// the exact int32 sum of u * q for row j in lane j (two chains of four).
XQ_ROWS8 inline __m256i block_dot8(const uint8_t* c, const int8_t* q) {
  prefetch_stream(c);  // four cache lines a block
  prefetch_stream(c + 64);
  prefetch_stream(c + 128);
  prefetch_stream(c + 192);
  __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
  for (int k = 0; k < 8; k += 2) {
    p0 = _mm256_dpbusd_epi32(p0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 * k)), act4(q + 4 * k));
    p1 = _mm256_dpbusd_epi32(p1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 * k + 32)),
                             act4(q + 4 * k + 4));
  }
  return _mm256_add_epi32(p0, p1);
}

XQ_ROWS8 void store8(__m256 v, int64_t n, float* y, const float* bias) {
  alignas(32) float out[8];
  _mm256_store_ps(out, v);
  for (int j = 0; j < 8; ++j) y[n + j] = out[j] + (bias ? bias[n + j] : 0.0f);
}

// Block b of a Q8_0 copy's group of eight rows (codes c, f16 scales s8) into acc.
XQ_ROWS8 inline __m256 q8_0_block(const uint8_t* c, const uint16_t* s8, const QuantizedRow& a, int64_t b, __m256 acc) {
  const __m256i p = _mm256_sub_epi32(block_dot8(c + b * 256, a.q + b * 32), _mm256_set1_epi32(128 * a.sum32[b]));
  const __m256 ds = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s8 + b * 8))),
                                  _mm256_set1_ps(a.d32[b]));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), ds, acc);
}

XQ_ROWS8 void q8_0_rows8_interleaved(const uint8_t* w, uint64_t row_bytes, const uint8_t* codes8,
                                     const uint16_t* scales8, int64_t r0, int64_t r1, const QuantizedRow& a, int64_t nb,
                                     float* y, const float* bias) {
  auto one_rows = [&](int64_t s, int64_t e) {
    if (s < e)
      kAvx512Q8_0Rows(w + static_cast<uint64_t>(s) * row_bytes, row_bytes, e - s, a, nb, y + s, bias ? bias + s : nullptr);
  };
  const int64_t g0 = (r0 + 7) / 8, g1 = r1 / 8;  // whole groups inside [r0, r1)
  if (g0 >= g1) return one_rows(r0, r1);
  one_rows(r0, g0 * 8);
  for (int64_t r8 = g0; r8 < g1; ++r8) {
    const uint8_t* c = codes8 + r8 * nb * 256;
    const uint16_t* s8 = scales8 + r8 * nb * 8;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {  // two chains: the FMA latency is not on every block's path
      acc0 = q8_0_block(c, s8, a, b, acc0);
      acc1 = q8_0_block(c, s8, a, b + 1, acc1);
    }
    if (b < nb) acc0 = q8_0_block(c, s8, a, b, acc0);
    store8(_mm256_add_ps(acc0, acc1), r8 * 8, y, bias);
  }
  one_rows(g1 * 8, r1);
}

XQ_ROWS8 void gemv8_rows8_interleaved(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  const GemvRowsKernels& one = kAvx512GemvRows;
  if (!w.codes8) return one.gemv8(w, a, n0, n1, y);
  const int64_t g0 = (n0 + 7) / 8, g1 = n1 / 8;  // whole groups inside [n0, n1)
  if (g0 >= g1) return one.gemv8(w, a, n0, n1, y);
  if (n0 < g0 * 8) one.gemv8(w, a, n0, g0 * 8, y);
  const int64_t nblk = w.bb[w.G];
  for (int64_t r8 = g0; r8 < g1; ++r8) {
    const uint8_t* c = w.codes8 + r8 * nblk * 256;
    const float* s8 = w.scales8 + r8 * w.G * 8;
    __m256 tot = _mm256_setzero_ps();
    for (int64_t g = 0; g < w.G; ++g) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t b = w.bb[g]; b < w.bb[g + 1]; ++b) {
        const __m256i p = _mm256_sub_epi32(block_dot8(c + b * 256, a.q + b * 32), _mm256_set1_epi32(a.corr1[b]));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(a.sa[b]), acc);
      }
      tot = _mm256_fmadd_ps(_mm256_loadu_ps(s8 + g * 8), acc, tot);
    }
    alignas(32) float out[8];
    _mm256_store_ps(out, tot);
    const int64_t n = r8 * 8;
    for (int j = 0; j < 8; ++j) y[n + j] = out[j] - zero_point_term(w, a, n + j) + (w.bias ? w.bias[n + j] : 0.0f);
  }
  if (g1 * 8 < n1) one.gemv8(w, a, g1 * 8, n1, y);
}

}  // namespace

extern const BlockRows8Kernel kAvx512Q8_0Rows8i = &q8_0_rows8_interleaved;

void gemv8_rows8_interleaved_avx512(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  gemv8_rows8_interleaved(w, a, n0, n1, y);
}

namespace {

// kM activation rows (q + m * q_stride, their group code sums qsum + m * G)
// against whole groups [g0, g1): each 256-byte block loaded once for all of them.
template <int kM>
XQ_ROWS8 void w8a8_rows8(const uint8_t* codes8, const float* scales8, const int64_t* bb, int64_t G, const int8_t* q,
                         int64_t q_stride, const int32_t* qsum, int64_t g0, int64_t g1, float* acc, int64_t acc_stride) {
  const int64_t nblk = bb[G];
  for (int64_t r8 = g0; r8 < g1; ++r8) {
    const uint8_t* c = codes8 + r8 * nblk * 256;
    const float* s8 = scales8 + r8 * G * 8;
    __m256 tot[kM];
    for (int m = 0; m < kM; ++m) tot[m] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      // The signed dot is u * q less 128 times the codes' sum; int32 lanes
      // wrap (vpdpbusd does not saturate), so the result is exact whenever
      // the signed dot itself fits, as dot8_i8's does.
      __m256i d[kM];
      for (int m = 0; m < kM; ++m) d[m] = _mm256_set1_epi32(-128 * qsum[m * G + g]);
      for (int64_t b = bb[g]; b < bb[g + 1]; ++b) {
        const uint8_t* cb = c + b * 256;
        prefetch_stream(cb);
        prefetch_stream(cb + 64);
        prefetch_stream(cb + 128);
        prefetch_stream(cb + 192);
        for (int k = 0; k < 8; ++k) {
          const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cb + 32 * k));
          for (int m = 0; m < kM; ++m) d[m] = _mm256_dpbusd_epi32(d[m], u, act4(q + m * q_stride + b * 32 + 4 * k));
        }
      }
      const __m256 sg = _mm256_loadu_ps(s8 + g * 8);
      for (int m = 0; m < kM; ++m) tot[m] = _mm256_add_ps(tot[m], _mm256_mul_ps(sg, _mm256_cvtepi32_ps(d[m])));
    }
    for (int m = 0; m < kM; ++m) _mm256_storeu_ps(acc + m * acc_stride + r8 * 8, tot[m]);
  }
}

}  // namespace

void w8a8_rows8_interleaved_avx512(const uint8_t* codes8, const float* scales8, const int64_t* bb, int64_t G,
                                   const int8_t* q, int64_t q_stride, const int32_t* qsum, int64_t M, int64_t g0,
                                   int64_t g1, float* acc, int64_t acc_stride) {
  for (int64_t m0 = 0; m0 < M; m0 += 4) {  // up to four activation rows a pass over the weight
    const int8_t* qm = q + m0 * q_stride;
    const int32_t* sm = qsum + m0 * G;
    float* am = acc + m0 * acc_stride;
    switch (std::min<int64_t>(4, M - m0)) {
      case 1: w8a8_rows8<1>(codes8, scales8, bb, G, qm, q_stride, sm, g0, g1, am, acc_stride); break;
      case 2: w8a8_rows8<2>(codes8, scales8, bb, G, qm, q_stride, sm, g0, g1, am, acc_stride); break;
      case 3: w8a8_rows8<3>(codes8, scales8, bb, G, qm, q_stride, sm, g0, g1, am, acc_stride); break;
      default: w8a8_rows8<4>(codes8, scales8, bb, G, qm, q_stride, sm, g0, g1, am, acc_stride); break;
    }
  }
}

}  // namespace xquant::cpu
