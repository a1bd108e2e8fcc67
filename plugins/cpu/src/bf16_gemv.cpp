// bf16_gemv.cpp: see bf16_gemv.hpp. Built in xquant_cpu_qkernels with
// -ffp-contract=off, so "acc + w * x" stays a rounded product then a rounded
// sum, as in dot_f32 (dense_ops.cpp, compiled for baseline x86-64: no FMA).
#include "bf16_gemv.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/host.hpp>

#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace xquant::cpu {

namespace {

constexpr int kLanes = 16;  // dot_f32's four 4-wide accumulators, lane by lane

// dot_f32's reduction of its 16 lanes (a0 = lanes 0..3, a1 = 4..7, ...):
// s = (a0 + a1) + (a2 + a3), then (s0 + s1) + (s2 + s3).
float reduce_like_dot_f32(const float* lane) {
  float s[4];
  for (int l = 0; l < 4; ++l) s[l] = (lane[l] + lane[4 + l]) + (lane[8 + l] + lane[12 + l]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float tail(const uint16_t* w, const float* x, int64_t i, int64_t k, float sum) {
  for (; i < k; ++i) sum += sdk::bf16_to_f32(w[i]) * x[i];
  return sum;
}

float row_scalar(const uint16_t* w, const float* x, int64_t k) {
  float lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] += sdk::bf16_to_f32(w[i + j]) * x[i + j];
  return tail(w, x, i, k, reduce_like_dot_f32(lane));
}

void rows_scalar(const uint16_t* w, const float* x, int64_t k, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r) out[r - r0] = row_scalar(w + r * k, x, k);
}

// BF16 -> F32 is the 16 bits shifted up: exact.
__attribute__((target("avx2"))) inline __m256 widen8(const uint16_t* w) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))), 16));
}

// Four rows at a time (independent add chains, one load of x per step);
// each row's lanes 0..7 and 8..15 in two registers.
__attribute__((target("avx2"))) void rows_avx2(const uint16_t* w, const float* x, int64_t k, int64_t r0, int64_t r1,
                                               float* out) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint16_t* wr[4] = {w + r * k, w + (r + 1) * k, w + (r + 2) * k, w + (r + 3) * k};
    __m256 lo[4], hi[4];
    for (int j = 0; j < 4; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + kLanes <= k; i += kLanes) {
      const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
      for (int j = 0; j < 4; ++j) {
        lo[j] = _mm256_add_ps(lo[j], _mm256_mul_ps(widen8(wr[j] + i), x0));
        hi[j] = _mm256_add_ps(hi[j], _mm256_mul_ps(widen8(wr[j] + i + 8), x1));
      }
    }
    for (int j = 0; j < 4; ++j) {
      float lane[kLanes];
      _mm256_storeu_ps(lane, lo[j]);
      _mm256_storeu_ps(lane + 8, hi[j]);
      out[r + j - r0] = tail(wr[j], x, i, k, reduce_like_dot_f32(lane));
    }
  }
  rows_scalar(w, x, k, r, r1, out + (r - r0));
}

__attribute__((target("avx512f"))) inline __m512 widen16(const uint16_t* w) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))), 16));
}

// Four rows at a time, each row's 16 lanes in one register.
__attribute__((target("avx512f"))) void rows_avx512(const uint16_t* w, const float* x, int64_t k, int64_t r0,
                                                    int64_t r1, float* out) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint16_t* wr[4] = {w + r * k, w + (r + 1) * k, w + (r + 2) * k, w + (r + 3) * k};
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + kLanes <= k; i += kLanes) {
      const __m512 xv = _mm512_loadu_ps(x + i);
      for (int j = 0; j < 4; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(widen16(wr[j] + i), xv));
    }
    for (int j = 0; j < 4; ++j) {
      float lane[kLanes];
      _mm512_storeu_ps(lane, acc[j]);
      out[r + j - r0] = tail(wr[j], x, i, k, reduce_like_dot_f32(lane));
    }
  }
  rows_scalar(w, x, k, r, r1, out + (r - r0));
}

// vdpbf16ps: per 32 columns, each F32 lane adds two BF16 x BF16 products.
// Columns past the last multiple of 32 use the BF16 activation too, so every
// product of a row is rounded the same way.
__attribute__((target("avx512f,avx512bf16"))) void rows_avx512bf16(const uint16_t* w, const uint16_t* xb, int64_t k,
                                                                   int64_t r0, int64_t r1, float* out) {
  auto tail_bf16 = [&](const uint16_t* wr, int64_t i, float sum) {
    for (; i < k; ++i) sum += sdk::bf16_to_f32(wr[i]) * sdk::bf16_to_f32(xb[i]);
    return sum;
  };
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint16_t* wr[4] = {w + r * k, w + (r + 1) * k, w + (r + 2) * k, w + (r + 3) * k};
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + i);
      for (int j = 0; j < 4; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], (__m512bh)_mm512_loadu_si512(wr[j] + i), xv);
    }
    for (int j = 0; j < 4; ++j) out[r + j - r0] = tail_bf16(wr[j], i, _mm512_reduce_add_ps(acc[j]));
  }
  for (; r < r1; ++r) {
    const uint16_t* wr = w + r * k;
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32)
      acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(wr + i), (__m512bh)_mm512_loadu_si512(xb + i));
    out[r - r0] = tail_bf16(wr, i, _mm512_reduce_add_ps(acc));
  }
}

}  // namespace

const char* bf16_gemv_path_name(Bf16GemvPath p) {
  switch (p) {
    case Bf16GemvPath::scalar: return "scalar";
    case Bf16GemvPath::avx2: return "avx2";
    case Bf16GemvPath::avx512: return "avx512";
    case Bf16GemvPath::avx512bf16: return "avx512bf16";
  }
  return "?";
}

bool cpu_has_bf16_gemv_path(Bf16GemvPath p) {
  __builtin_cpu_init();
  switch (p) {
    case Bf16GemvPath::scalar: return true;
    case Bf16GemvPath::avx2: return __builtin_cpu_supports("avx2");
    case Bf16GemvPath::avx512: return __builtin_cpu_supports("avx512f");
    case Bf16GemvPath::avx512bf16: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  }
  return false;
}

Bf16GemvPath selected_bf16_gemv_path() {
  const char* env = std::getenv("XQUANT_CPU_BF16_GEMV");
  if (!env || !*env) {
    if (cpu_has_bf16_gemv_path(Bf16GemvPath::avx512)) return Bf16GemvPath::avx512;
    return cpu_has_bf16_gemv_path(Bf16GemvPath::avx2) ? Bf16GemvPath::avx2 : Bf16GemvPath::scalar;
  }
  for (Bf16GemvPath p : {Bf16GemvPath::scalar, Bf16GemvPath::avx2, Bf16GemvPath::avx512, Bf16GemvPath::avx512bf16})
    if (std::string(env) == bf16_gemv_path_name(p)) {
      if (!cpu_has_bf16_gemv_path(p))
        throw sdk::Error(XQ_ERR_UNSUPPORTED,
                         std::string("cpu provider: XQUANT_CPU_BF16_GEMV=") + env + ": this CPU lacks " + env);
      return p;
    }
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, std::string("cpu provider: XQUANT_CPU_BF16_GEMV=") + env +
                                                " is not one of scalar, avx2, avx512, avx512bf16");
}

void bf16_round_activation(const float* x, int64_t k, uint16_t* xb) {
  for (int64_t i = 0; i < k; ++i) xb[i] = sdk::f32_to_bf16(x[i]);
}

void bf16_gemv_rows(Bf16GemvPath p, const uint16_t* w, const float* x, const uint16_t* xb, int64_t k, int64_t r0,
                    int64_t r1, float* out) {
  switch (p) {
    case Bf16GemvPath::avx2: return rows_avx2(w, x, k, r0, r1, out);
    case Bf16GemvPath::avx512: return rows_avx512(w, x, k, r0, r1, out);
    case Bf16GemvPath::avx512bf16: return rows_avx512bf16(w, xb, k, r0, r1, out);
    case Bf16GemvPath::scalar: break;
  }
  rows_scalar(w, x, k, r0, r1, out);
}

}  // namespace xquant::cpu
