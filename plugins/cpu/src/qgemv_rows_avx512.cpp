// qgemv_rows_avx512.cpp: the row-range GEMV (qgemv_rows.hpp) with AVX-512
// VNNI on 256-bit vectors (the VL forms): per 32-column block the codes as
// 32 unsigned bytes (INT4 nibbles as code + 8, INT8 codes as code + 128 by
// xor 0x80), one vpdpbusd (u8 x s8, four products summed into each int32
// lane) against the activation codes, one conversion, one FMA by the block's
// activation scale broadcast; two chains (even and odd blocks), as the GGUF
// Q4_0 / Q8_0 kernels of gguf_gemv_rows_avx512.cpp. The codes' offset times
// the activation sums is the same for every row, so it is summed per group
// once per call (group_offsets) and each row subtracts it once per group.
//
// Why not 512 bits: this file first ran two blocks per 512-bit vpdpbusd with
// the activation scales and offsets as lane vectors (QuantizedActs::sa8,
// corr). On this project's AMD EPYC VMs (Zen 4 splits 512-bit operations in
// two; bench_gemv_rows at one thread, 2026-12-02/03) INT8 per-channel read its
// weights at 59% (K 1536 x N 8960) and 38% (K 8960 x N 1536) of the plain
// read loop, against 96% / 82% for the GGUF Q8_0 kernel of this shape: three
// 64-byte activation loads per 64 weight bytes (18 KB lane vectors each at
// K = 8960, which the weight stream pushes out of L1). This form reads at
// 79-87% on both shapes. The stream prefetch of the AVX2 kernels
// (stream_prefetch.hpp) helps the INT4 rows here (37-54% -> 53-56% of the
// read loop) but slows the INT8 ones (79-87% -> 65-75%, three interleaved
// runs), as the GGUF Q8_0 kernel of that file goes without it: INT4 only.
// Dispatch hands this table out only when the CPU has avx512f, bw, vl and
// vnni.
#include "qgemv_rows.hpp"

#include "stream_prefetch.hpp"

#include <immintrin.h>

#include <vector>

#define XQ_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace xquant::cpu {
namespace {

XQ_AVX512 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Block b's 32 codes as unsigned bytes in column order: INT4 16 bytes with
// column i in the low nibble of byte i and column 16 + i in its high one
// (qkernels.hpp), INT8 32 bytes moved to unsigned.
template <bool kInt4>
XQ_AVX512 inline __m256i unsigned_codes(const uint8_t* row, int64_t b) {
  if constexpr (kInt4) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
  } else {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
}

// acc + sa[b] * (block b's int32 lanes of unsigned code times activation code).
template <bool kInt4>
XQ_AVX512 inline __m256 block(const uint8_t* row, const QuantizedActs& a, int64_t b, __m256 acc) {
  const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), unsigned_codes<kInt4>(row, b),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + b * 32)));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(a.sa[b]), acc);
}

// Per group g: sum over its blocks of sa[b] * offset * (sum of q over b),
// what the unsigned codes add to every row's group sum. Per thread.
const float* group_offsets(const PackedRows& w, const QuantizedActs& a) {
  thread_local std::vector<float> off;
  if (static_cast<int64_t>(off.size()) < w.G) off.resize(static_cast<size_t>(w.G));
  for (int64_t g = 0; g < w.G; ++g) {
    float s = 0.0f;
    for (int64_t b = w.bb[g]; b < w.bb[g + 1]; ++b) s += a.sa[b] * static_cast<float>(a.corr1[b]);
    off[static_cast<size_t>(g)] = s;
  }
  return off.data();
}

template <bool kInt4>
XQ_AVX512 void gemv(const PackedRows& w, const QuantizedActs& a, int64_t n0, int64_t n1, float* y) {
  constexpr int64_t kBlockBytes = kInt4 ? 16 : 32;
  const float* off = group_offsets(w, a);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.codes + n * w.row_bytes;
    const float* s = w.scales + n * w.G;
    __m256 tot = _mm256_setzero_ps();
    float offset_term = 0.0f;
    for (int64_t g = 0; g < w.G; ++g) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      int64_t b = w.bb[g];
      for (; b + 2 <= w.bb[g + 1]; b += 2) {
        if constexpr (kInt4) prefetch_stream(row + b * kBlockBytes);  // see the header comment
        acc0 = block<kInt4>(row, a, b, acc0);
        acc1 = block<kInt4>(row, a, b + 1, acc1);
      }
      if (b < w.bb[g + 1]) acc0 = block<kInt4>(row, a, b, acc0);
      tot = _mm256_fmadd_ps(_mm256_set1_ps(s[g]), _mm256_add_ps(acc0, acc1), tot);
      offset_term += s[g] * off[g];
    }
    y[n] = hsum(tot) - offset_term - zero_point_term(w, a, n) + (w.bias ? w.bias[n] : 0.0f);
  }
}

}  // namespace

const GemvRowsKernels kAvx512GemvRows{"avx512", 8, 128, &gemv<true>, &gemv<false>};

}  // namespace xquant::cpu
