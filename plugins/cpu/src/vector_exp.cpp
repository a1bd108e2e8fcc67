// The Cephes expf scheme (Moshier, "Methods and Programs for Mathematical
// Functions", cephes/single/expf.c): x = n ln2 + r with |r| <= ln2/2, a degree-6
// polynomial for e^r, 2^n put straight into the exponent bits, several lanes
// at a time with branch-free selects; the sum keeps one partial sum per lane.
#include "vector_exp.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace xquant::cpu {
namespace {

// Lanes in GCC/Clang vector extensions: four (one SSE2 register, x86-64's
// baseline) or, where the CPU has AVX2, eight. No FMA contraction
// (-ffp-contract=off for this library): both widths run the same operations
// in the same order, lane by lane.
using V4f = float __attribute__((vector_size(16)));
using V4i = int32_t __attribute__((vector_size(16)));
using V8f = float __attribute__((vector_size(32)));
using V8i = int32_t __attribute__((vector_size(32)));

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;        // ln 2 split so n * kLn2Hi is exact
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kMaxArg = 88.7228391f;        // exp(kMaxArg) is the largest float
// ln(FLT_MIN): below it the result would be subnormal, and on x86 every
// multiply producing a subnormal takes a microcode assist of ~100 cycles.
// Those results are flushed to 0 (each is below 1.2e-38 of the row's
// largest term in a softmax).
constexpr float kMinArg = -87.3365448f;
constexpr float kRoundMagic = 12582912.0f;    // 1.5 * 2^23: adding it rounds to an integer

// out = e^a lane by lane; a below kMinArg gives 0, above kMaxArg +inf, NaN
// stays NaN. (By reference: passing 32-byte vectors by value changes the ABI
// between the AVX2 and baseline callers.)
template <class VF, class VI>
__attribute__((always_inline)) inline void exp_lanes(const VF& a, VF& out) {
  const VF zero = {}, lo = zero + kMinArg, hi = zero + kMaxArg;
  const VF x = a < lo ? lo : (a > hi ? hi : a);
  const VF n = (x * kLog2e + kRoundMagic) - kRoundMagic;
  const VF r = (x - n * kLn2Hi) - n * kLn2Lo;
  const VF z = r * r;
  VF p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const VF er = p * z + r + 1.0f;
  // n in [-126, 128]: 2^n as two factors so that n = 128 (e^x just below
  // FLT_MAX) keeps each exponent field in range.
  const VI ni = __builtin_convertvector(n, VI);
  const VI n1 = ni >> 1;
  const VI n2 = ni - n1;
  const VF s1 = reinterpret_cast<VF>((n1 + 127) << 23);
  const VF s2 = reinterpret_cast<VF>((n2 + 127) << 23);
  const VF e = er * s1 * s2;
  out = a < lo ? zero : (a > hi ? zero + INFINITY : (a == a ? e : a));
}

template <class VF, class VI>
__attribute__((always_inline)) inline float exp_row(const float* x, float* y, int64_t n, float shift) {
  constexpr int64_t L = sizeof(VF) / sizeof(float);
  VF sum = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    VF a;
    std::memcpy(&a, x + i, sizeof a);
    a -= shift;
    VF e;
    exp_lanes<VF, VI>(a, e);
    std::memcpy(y + i, &e, sizeof e);
    sum += e;
  }
  if (i < n) {  // the tail through the same lanes, so every element rounds alike
    VF a = {};
    a -= INFINITY;
    std::memcpy(&a, x + i, static_cast<size_t>(n - i) * sizeof(float));
    a -= shift;
    VF e;
    exp_lanes<VF, VI>(a, e);
    std::memcpy(y + i, &e, static_cast<size_t>(n - i) * sizeof(float));
    sum += e;
  }
  float total = 0.0f;
  for (int64_t l = 0; l < L; ++l) total += sum[l];
  return total;
}

template <class VF>
__attribute__((always_inline)) inline float max_row(const float* x, int64_t n) {
  constexpr int64_t L = sizeof(VF) / sizeof(float);
  VF m = {};
  m -= INFINITY;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    VF a;
    std::memcpy(&a, x + i, sizeof a);
    m = m < a ? a : m;  // std::max's rule lane by lane: a NaN never replaces
  }
  float out = -INFINITY;
  for (int64_t l = 0; l < L; ++l) out = std::max(out, m[l]);
  for (; i < n; ++i) out = std::max(out, x[i]);
  return out;
}

// One block of up to L lanes: a whole block (bytes = sizeof(VF)) compiles to
// plain vector loads and stores; only the tail pays a variable-size copy.
template <class VF, class VI>
__attribute__((always_inline)) inline void silu_mul_block(const float* a, const float* g, float* y, size_t bytes) {
  VF x = {}, up = {}, e;
  std::memcpy(&x, a, bytes);
  std::memcpy(&up, g, bytes);
  const VF minus = -x;
  exp_lanes<VF, VI>(minus, e);
  const VF out = x / (e + 1.0f) * up;
  std::memcpy(y, &out, bytes);
}

template <class VF, class VI>
__attribute__((always_inline)) inline void silu_mul_row(const float* a, const float* g, float* y, int64_t n) {
  constexpr int64_t L = sizeof(VF) / sizeof(float);
  int64_t i = 0;
  for (; i + L <= n; i += L) silu_mul_block<VF, VI>(a + i, g + i, y + i, sizeof(VF));
  if (i < n) silu_mul_block<VF, VI>(a + i, g + i, y + i, static_cast<size_t>(n - i) * sizeof(float));
}

__attribute__((target("avx2"))) void silu_mul_avx2(const float* a, const float* g, float* y, int64_t n) {
  silu_mul_row<V8f, V8i>(a, g, y, n);
}

void silu_mul_sse2(const float* a, const float* g, float* y, int64_t n) { silu_mul_row<V4f, V4i>(a, g, y, n); }

__attribute__((target("avx2"))) float max_row_avx2(const float* x, int64_t n) { return max_row<V8f>(x, n); }

float max_row_sse2(const float* x, int64_t n) { return max_row<V4f>(x, n); }

__attribute__((target("avx2"))) float exp_row_avx2(const float* x, float* y, int64_t n, float shift) {
  return exp_row<V8f, V8i>(x, y, n, shift);
}

float exp_row_sse2(const float* x, float* y, int64_t n, float shift) { return exp_row<V4f, V4i>(x, y, n, shift); }

using ExpRow = float (*)(const float*, float*, int64_t, float);

ExpRow pick_exp_row() { return __builtin_cpu_supports("avx2") ? exp_row_avx2 : exp_row_sse2; }

using MaxRow = float (*)(const float*, int64_t);

MaxRow pick_max_row() { return __builtin_cpu_supports("avx2") ? max_row_avx2 : max_row_sse2; }

using SiluMul = void (*)(const float*, const float*, float*, int64_t);

SiluMul pick_silu_mul() { return __builtin_cpu_supports("avx2") ? silu_mul_avx2 : silu_mul_sse2; }

}  // namespace

float exp_shifted_sum(const float* x, float* y, int64_t n, float shift) {
  static const ExpRow row = pick_exp_row();
  return row(x, y, n, shift);
}

void silu_mul(const float* a, const float* g, float* y, int64_t n) {
  static const SiluMul row = pick_silu_mul();
  row(a, g, y, n);
}

float row_max(const float* x, int64_t n) {
  static const MaxRow row = pick_max_row();
  return row(x, n);
}

}  // namespace xquant::cpu
