// bf16_gemv.cu: the few-row BF16 MATMUL of bf16_gemv.hpp.
#include "bf16_gemv.hpp"

#include "common.cuh"
#include "pdl.cuh"

namespace xqcuda {

namespace {

constexpr int kWarps = 8;   // warps per CTA, one output row each at a time
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

// Warp w of CTA b computes rows n = b * kWarps + w (a grid-stride over N):
// lane i takes the 8-element chunks i, i + 32, ... of the row, kUnroll of
// them loaded before any is used.
//
// Launched with PDL (pdl.cuh; CUDA Programming Guide, "Programmatic
// Dependent Launch and Synchronization"): the weights are constants uploaded
// at load, so each warp issues its first row's first kUnroll x 16 B per lane
// before griddepcontrol.wait (an L2 prefetch of the rest of that row as well
// made the decode step 6-8% slower on the H200: docs/results.md, "PDL on the
// decode chain, H200"); x (the previous kernel's output) is read and y
// written only after it. The kernel lets its own successor launch at once:
// that one waits for this grid to complete before it reads y.
template <int M>
__global__ void __launch_bounds__(kWarps * 32, M <= 2 ? 6 : M == 3 ? 5 : 4) bf16_gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ w,
                                                                 const void* __restrict__ bias, DType bias_t, int64_t N,
                                                                 int64_t chunks, void* y, DType yt) {
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  int64_t n = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  uint4 wv[kUnroll];
  auto load = [&](const uint4* row, int64_t c0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + 32 * u;
      wv[u] = c < chunks ? __ldcs(row + c) : make_uint4(0, 0, 0, 0);  // streamed once: evict first
    }
  };
  bool preloaded = false;
  if (n < N) {
    load(w + n * chunks, lane);
    preloaded = true;
  }
  pdl_wait();
  for (; n < N; n += stride) {
    const uint4* row = w + n * chunks;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;
    for (int64_t c0 = lane; c0 < chunks; c0 += 32 * kUnroll) {
      if (!preloaded) load(row, c0);
      preloaded = false;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = c0 + 32 * u;
        if (c < chunks) {
          float wf[8];
          bf16x8_to_float(wv[u], wf);
#pragma unroll
          for (int m = 0; m < M; ++m) {
            float xf[8];
            bf16x8_to_float(__ldg(x + m * chunks + c), xf);
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[m] += wf[i] * xf[i];
          }
        }
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float s = acc[m];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (lane == 0) store_from_float(y, yt, m * N + n, bias ? s + load_as_float(bias, bias_t, n) : s);
    }
  }
}

template <int M>
cudaError_t launch(const void* x, const void* w, const void* bias, DType bias_t, int64_t N, int64_t K, void* y,
                   DType yt, cudaStream_t stream) {
  const int64_t ctas = (N + kWarps - 1) / kWarps;
  const unsigned grid = static_cast<unsigned>(ctas < 65535LL * 16 ? ctas : 65535LL * 16);
  return launch_pdl(bf16_gemv_kernel<M>, dim3(grid), dim3(kWarps * 32), 0, stream, static_cast<const uint4*>(x),
                    static_cast<const uint4*>(w), bias, bias_t, N, K / 8, y, yt);
}

}  // namespace

bool bf16_gemv_fits(int64_t M, int64_t K, const void* x, const void* w) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return M >= 1 && M <= kGemvMaxRows && K > 0 && K <= kGemvMaxK && K % 8 == 0 && aligned(x) && aligned(w);
}

cudaError_t bf16_gemv(const void* x, const void* w, const void* bias, DType bias_t, int64_t M, int64_t N, int64_t K,
                      void* y, DType yt, cudaStream_t stream) {
  if (N <= 0) return cudaSuccess;
  switch (M) {
    case 1: return launch<1>(x, w, bias, bias_t, N, K, y, yt, stream);
    case 2: return launch<2>(x, w, bias, bias_t, N, K, y, yt, stream);
    case 3: return launch<3>(x, w, bias, bias_t, N, K, y, yt, stream);
    case 4: return launch<4>(x, w, bias, bias_t, N, K, y, yt, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace xqcuda
