// gguf_gemv_rows_avx512.cpp: the row-range decode GEMVs of gguf_gemv_rows.hpp
// on AVX-512 VNNI (F + BW + VL + VNNI, and F16C for the scales), on 256-bit
// vectors. Q4_0 / Q8_0: per 32-column block the codes as 32 unsigned bytes,
// one vpdpbusd against the activation codes, one conversion, one FMA by the
// block's combined scale, the offset term one scalar FMA; two chains (even
// and odd blocks). Tried and slower on this project's AMD EPYC (Zen 4 splits
// 512-bit operations in two): pairs of blocks per 512-bit vpdpbusd with
// cross-lane shuffles (0.92x the per-row kernel on SmolLM2 Q4_0 decode) and
// eight f16 scales per vpgatherdd (0.64x). Q4_K: see q4_k_row. Q4_K and Q6_K
// eight rows at a time on their interleaved copies: the sources of
// gguf_q4_k_rows8.inc and gguf_q6_k_rows8.inc built for these features, in
// their vpdpbusd forms (XQ_Q4K_VNNI, XQ_Q6K_VNNI). Dispatch hands these out only when
// the CPU has all of those features.
#include "gguf_gemv_rows.hpp"
#include "qgemv_rows8.hpp"

#include <immintrin.h>

#include <cstring>
#include <vector>

#define XQ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define XQ_Q4K XQ_AVX512

namespace xquant::cpu {
namespace {

// One f16 scale with F16C's vcvtph2ps.
XQ_AVX512 inline float f16s(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// Q4_0: {f16 d; uint8 qs[16]} (ggml-common.h block_q4_0), element i in the
// low nibble of qs[i], element 16 + i in its high nibble: 32 unsigned codes.
struct Q4_0 {
  static constexpr int64_t kBytes = 18;
  static constexpr float kOffset = 8.0f;
  XQ_AVX512 static __m256i codes(const uint8_t* blk) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
  }
};

// Q8_0: {f16 d; int8 qs[32]} (block_q8_0); codes + 128 are unsigned.
struct Q8_0 {
  static constexpr int64_t kBytes = 34;
  static constexpr float kOffset = 128.0f;
  XQ_AVX512 static __m256i codes(const uint8_t* blk) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

// One block: acc + dw * da * (its exact int32 lanes of unsigned codes times
// the activation codes); corr + dw * (the block's offset term).
template <class T>
XQ_AVX512 inline __m256 block(const uint8_t* blk, const int8_t* q, float da, float off, __m256 acc, float& corr) {
  const float dw = f16s(blk);
  corr += dw * off;
  const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), T::codes(blk),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * da), acc);
}

XQ_AVX512 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The activation's offset terms, offset * da[b] * sum32[b], per thread.
float* offsets(const QuantizedRow& a, int64_t nb, float offset) {
  thread_local std::vector<float> off;
  if (static_cast<int64_t>(off.size()) < nb) off.resize(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) off[b] = offset * a.d32[b] * static_cast<float>(a.sum32[b]);
  return off.data();
}

template <class T>
XQ_AVX512 void gemv_rows(const uint8_t* w, uint64_t row_bytes, int64_t rows, const QuantizedRow& a, int64_t nb,
                         float* y, const float* bias) {
  const float* off = offsets(a, nb, T::kOffset);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w + static_cast<uint64_t>(r) * row_bytes;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr0 = 0.0f, corr1 = 0.0f;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {  // two chains: the FMA latency is not on every block's path
      acc0 = block<T>(row + b * T::kBytes, a.q + b * 32, a.d32[b], off[b], acc0, corr0);
      acc1 = block<T>(row + (b + 1) * T::kBytes, a.q + (b + 1) * 32, a.d32[b + 1], off[b + 1], acc1, corr1);
    }
    if (b < nb) acc0 = block<T>(row + b * T::kBytes, a.q + b * 32, a.d32[b], off[b], acc0, corr0);
    y[r] = hsum(_mm256_add_ps(acc0, acc1)) - (corr0 + corr1) + (bias ? bias[r] : 0.0f);
  }
}

#include "gguf_gemv_rows_q4k.inc"
// The eight-row K-quant kernels in their vpdpbusd forms and without the
// software prefetch: both copies are read in address order (qgemv_rows8.hpp),
// which the hardware prefetchers follow; on this project's AVX-512 EPYC
// (bench_gemv_rows, one thread, 2026-12-03) the prefetch took the Q4_K
// vpdpbusd kernel from 71-114% of the read loop to 74-88%, and Qwen2.5
// Q4_K_M decode at one thread ran 16.1 tok/s with it on both kernels, 19.3
// without (three interleaved rounds).
#define XQ_ROWS8_NO_PREFETCH
#define XQ_Q4K_VNNI
#include "gguf_q4_k_rows8.inc"
#define XQ_Q6K_VNNI
#include "gguf_q6_k_rows8.inc"

}  // namespace

extern const BlockRowsKernel kAvx512Q4_0Rows = &gemv_rows<Q4_0>;
extern const BlockRowsKernel kAvx512Q8_0Rows = &gemv_rows<Q8_0>;
extern const BlockRowsKernel kAvx512Q4_KRows = &gemv_rows_q4_k;
extern const BlockRows8Kernel kAvx512Q4_KRows8i = &q4_k_rows8_interleaved;
extern const BlockRows8Kernel kAvx512Q6_KRows8i = &q6_k_rows8_interleaved;

}  // namespace xquant::cpu
