// The two row passes of a softmax, vectorized: the largest score and the
// shifted exponentials with their sum; and SwiGLU's SiLU on the same exp. With a scalar max (a latency-bound
// maxss chain) and libm's expf per score, the softmax of the cpu attention was
// most of a small model's forward.
#pragma once

#include <cstdint>

namespace xquant::cpu {

// y[i] = exp(x[i] - shift) for i < n (x and y may be the same array); returns
// the sum of the y[i]. Relative error against exp in double below 3e-7 for
// arguments in [-87.33, 88.72] (tests/cpu_provider/test_cpu_vector_exp.cpp);
// exactly 0 below ln(FLT_MIN) = -87.34 (no subnormal results: each would cost
// a microcode assist), +inf above 88.72, NaN kept.
float exp_shifted_sum(const float* x, float* y, int64_t n, float shift);

// The largest of x[0 .. n-1], as mx = std::max(mx, x[i]) from mx = -inf
// gives it (NaNs are skipped); -inf for n = 0.
float row_max(const float* x, int64_t n);

// y[i] = a[i] / (1 + exp(-a[i])) * g[i] (SwiGLU: SiLU of the gate times the
// up projection), with the same exp.
void silu_mul(const float* a, const float* g, float* y, int64_t n);

}  // namespace xquant::cpu
