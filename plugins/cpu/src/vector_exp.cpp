// The Cephes expf scheme (Moshier, "Methods and Programs for Mathematical
// Functions", cephes/single/expf.c): x = n ln2 + r with |r| <= ln2/2, a degree-6
// polynomial for e^r, 2^n put straight into the exponent bits, four lanes at
// a time with branch-free selects; the sum keeps one partial sum per lane.
#include "vector_exp.hpp"

#include <cmath>
#include <cstring>

namespace xquant::cpu {
namespace {

// Four lanes in GCC/Clang vector extensions: one SSE2 register on x86-64's
// baseline (one NEON register on arm64), no target attributes, no run-time
// dispatch.
using V4f = float __attribute__((vector_size(16)));
using V4i = int32_t __attribute__((vector_size(16)));

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;        // ln 2 split so n * kLn2Hi is exact
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kMaxArg = 88.7228391f;        // exp(kMaxArg) is the largest float
constexpr float kMinArg = -103.972084f;       // below: exp rounds to 0 in float
constexpr float kRoundMagic = 12582912.0f;    // 1.5 * 2^23: adding it rounds to an integer

V4f splat(float v) { return V4f{v, v, v, v}; }
V4i splat(int32_t v) { return V4i{v, v, v, v}; }

// e^a lane by lane; a below kMinArg gives 0, above kMaxArg +inf, NaN stays NaN.
V4f exp4(V4f a) {
  const V4f x = a < splat(kMinArg) ? splat(kMinArg) : (a > splat(kMaxArg) ? splat(kMaxArg) : a);
  const V4f n = (x * splat(kLog2e) + splat(kRoundMagic)) - splat(kRoundMagic);
  const V4f r = (x - n * splat(kLn2Hi)) - n * splat(kLn2Lo);
  const V4f z = r * r;
  V4f p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  const V4f er = p * z + r + splat(1.0f);
  // 2^n as two factors, so n down to -150 (subnormal results) keeps each
  // exponent field in range: 2^floor(n/2) * 2^(n - floor(n/2)).
  const V4i ni = __builtin_convertvector(n, V4i);
  const V4i n1 = ni >> 1;
  const V4i n2 = ni - n1;
  const V4f s1 = reinterpret_cast<V4f>((n1 + splat(127)) << 23);
  const V4f s2 = reinterpret_cast<V4f>((n2 + splat(127)) << 23);
  const V4f e = er * s1 * s2;
  return a < splat(kMinArg) ? splat(0.0f) : (a > splat(kMaxArg) ? splat(INFINITY) : (a == a ? e : a));
}

}  // namespace

float exp_shifted_sum(const float* x, float* y, int64_t n, float shift) {
  V4f sum = splat(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    V4f a;
    std::memcpy(&a, x + i, sizeof a);
    const V4f e = exp4(a - splat(shift));
    std::memcpy(y + i, &e, sizeof e);
    sum += e;
  }
  if (i < n) {  // the tail through the same lanes, so every element rounds alike
    V4f a = splat(-INFINITY);
    std::memcpy(&a, x + i, static_cast<size_t>(n - i) * sizeof(float));
    const V4f e = exp4(a - splat(shift));
    std::memcpy(y + i, &e, static_cast<size_t>(n - i) * sizeof(float));
    sum += e;
  }
  return (sum[0] + sum[1]) + (sum[2] + sum[3]);
}

}  // namespace xquant::cpu
