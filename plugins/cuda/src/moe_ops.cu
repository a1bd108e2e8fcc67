// moe_ops.cu: MOE_ROUTE and MOE_COMBINE kernels (moe_ops.hpp).
#include "moe_ops.hpp"

#include <cfloat>
#include <climits>

namespace xqcuda {

namespace {

constexpr int kPerLane = static_cast<int>(kMoeRouteMaxExperts / 32);

// One warp per row. Lane l holds experts l, l + 32, ...; the softmax sums
// across lanes, then k rounds each take the warp's largest remaining p (the
// lower id on ties, as torch.topk and the cpu provider order them).
__global__ void moe_route_kernel(const float* __restrict__ logits, int T, int E, int k, bool norm_topk,
                                 int32_t* __restrict__ ids, float* __restrict__ weights) {
  const int warps = blockDim.x / 32;
  const int t = blockIdx.x * warps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (t >= T) return;
  const float* l = logits + static_cast<int64_t>(t) * E;
  float p[kPerLane];
  float mx = -FLT_MAX;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < E ? l[e] : -FLT_MAX;
    mx = fmaxf(mx, p[i]);
  }
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < E ? expf(p[i] - mx) : -1.f;  // -1: never chosen
    if (e < E) sum += p[i];
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i)
    if (p[i] >= 0.f) p[i] /= sum;
  float chosen_p = 0.f, top = 0.f;  // lane j < k keeps slot j's choice (k <= 32, checked)
  int chosen_e = 0;
  for (int j = 0; j < k; ++j) {
    float bp = -2.f;
    int be = INT_MAX;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (p[i] > bp) bp = p[i], be = lane + 32 * i;  // ascending e: the first of equals is the lowest id
    for (int o = 16; o > 0; o >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, bp, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (op > bp || (op == bp && oe < be)) bp = op, be = oe;
    }
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (lane + 32 * i == be) p[i] = -1.f;
    if (lane == j) chosen_p = bp, chosen_e = be;
    top += bp;
  }
  if (lane < k) {
    ids[static_cast<int64_t>(t) * k + lane] = chosen_e;
    weights[static_cast<int64_t>(t) * k + lane] = norm_topk ? chosen_p / top : chosen_p;
  }
}

__global__ void moe_combine_kernel(const float* __restrict__ y, int64_t R, const float* __restrict__ w,
                                   const int32_t* __restrict__ where, int k, int64_t N, bool sigmoid,
                                   float* __restrict__ dst) {
  const int64_t blocks_per_row = (N + blockDim.x - 1) / blockDim.x;
  const int64_t t = blockIdx.x / blocks_per_row;
  const int64_t c = (blockIdx.x % blocks_per_row) * blockDim.x + threadIdx.x;
  if (c >= N) return;
  float acc = 0.f;
  for (int j = 0; j < k; ++j) {
    const int64_t s = t * k + j;
    const int64_t r = where ? where[s] : s;
    if (r < 0 || r >= R) continue;
    const float g = sigmoid ? 1.f / (1.f + expf(-w[s])) : w[s];
    acc += g * y[r * N + c];
  }
  dst[t * N + c] += acc;
}

}  // namespace

cudaError_t moe_route(const float* logits, int64_t T, int64_t E, int64_t k, bool norm_topk, int32_t* ids,
                      float* weights, cudaStream_t stream) {
  if (T == 0) return cudaSuccess;
  constexpr int kWarps = 4;
  moe_route_kernel<<<static_cast<unsigned>((T + kWarps - 1) / kWarps), kWarps * 32, 0, stream>>>(
      logits, static_cast<int>(T), static_cast<int>(E), static_cast<int>(k), norm_topk, ids, weights);
  return cudaGetLastError();
}

cudaError_t moe_combine_rows(const float* y, int64_t R, const float* w, const int32_t* where, int64_t T, int64_t k,
                             int64_t N, bool sigmoid, float* dst, cudaStream_t stream) {
  if (T == 0) return cudaSuccess;
  const int64_t blocks = (N + 255) / 256 * T;
  moe_combine_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(y, R, w, where, static_cast<int>(k), N, sigmoid, dst);
  return cudaGetLastError();
}

}  // namespace xqcuda
