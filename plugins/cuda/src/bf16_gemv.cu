// bf16_gemv.cu: the few-row BF16 MATMUL of bf16_gemv.hpp.
#include "bf16_gemv.hpp"

#include "common.cuh"
#include "pdl.cuh"

#include <cstdlib>
#include <cstring>

namespace xqcuda {

namespace {

constexpr int kWarps = 8;   // warps per CTA
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

// A row is read by S warps of the CTA (kWarps / S rows at a time, a
// grid-stride over N): lane i of slice s takes the 8-element chunks
// 32 s + i, + 32 S, ... of the row, kUnroll of them loaded before any is
// used; with S > 1 the slices' sums meet in shared memory. S = 1 is one warp
// a row, the kernel's first form (same summation order, same bits).
// Why S: at 4096-wide rows one warp walks 16 chunks a lane in four rounds
// and only the first round's loads go out before the PDL wait; with S = 4
// each lane's chunks are one round, all of them issued before the wait, and
// a 14336-wide row (down_proj) gets four warps' loads in flight instead of
// one (docs/results.md, "Session thirty on the H200").
//
// Launched with PDL (pdl.cuh; CUDA Programming Guide, "Programmatic
// Dependent Launch and Synchronization"): the weights are constants uploaded
// at load, so each warp issues its first row's first kUnroll x 16 B per lane
// before griddepcontrol.wait (an L2 prefetch of the rest of that row as well
// made the decode step 6-8% slower on the H200: docs/results.md, "PDL on the
// decode chain, H200"); x (the previous kernel's output) is read and y
// written only after it. The kernel lets its own successor launch at once:
// that one waits for this grid to complete before it reads y.
template <int M, int S>
__global__ void __launch_bounds__(kWarps * 32, M <= 2 ? 6 : M == 3 ? 5 : 4) bf16_gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ w,
                                                                 const void* __restrict__ bias, DType bias_t, int64_t N,
                                                                 int64_t chunks, void* y, DType yt) {
  constexpr int kRows = kWarps / S;  // rows of the CTA at a time
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, slice = warp % S;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kRows;
  const int64_t first = 32 * slice + lane, step = 32 * S;
  int64_t n0 = static_cast<int64_t>(blockIdx.x) * kRows;  // the CTA's first row this round
  int64_t n = n0 + warp / S;
  uint4 wv[kUnroll];
  auto load = [&](const uint4* row, int64_t c0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + step * u;
      wv[u] = c < chunks ? __ldcs(row + c) : make_uint4(0, 0, 0, 0);  // streamed once: evict first
    }
  };
  bool preloaded = false;
  if (n < N) {
    load(w + n * chunks, first);
    preloaded = true;
  }
  pdl_wait();
  // The loop runs while the CTA has rows (not while this warp has), so
  // every warp of the CTA reaches the barriers of the S > 1 sum.
  for (; n0 < N; n0 += stride, n += stride) {
    const bool live = n < N;
    const uint4* row = w + n * chunks;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;
    for (int64_t c0 = first; live && c0 < chunks; c0 += step * kUnroll) {
      if (!preloaded) load(row, c0);
      preloaded = false;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = c0 + step * u;
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
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], o);
    }
    if constexpr (S > 1) {
      __shared__ float part[kWarps][M];
      if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; ++m) part[warp][m] = acc[m];
      }
      __syncthreads();
      if (slice == 0) {
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
          for (int p = 1; p < S; ++p) acc[m] += part[warp + p][m];
      }
      __syncthreads();  // part is written again next round
    }
    if (live && slice == 0 && lane == 0) {
#pragma unroll
      for (int m = 0; m < M; ++m)
        store_from_float(y, yt, m * N + n, bias ? acc[m] + load_as_float(bias, bias_t, n) : acc[m]);
    }
  }
}

template <int M, int S>
cudaError_t launch(const void* x, const void* w, const void* bias, DType bias_t, int64_t N, int64_t K, void* y,
                   DType yt, cudaStream_t stream) {
  constexpr int kRows = kWarps / S;
  const int64_t ctas = (N + kRows - 1) / kRows;
  const unsigned grid = static_cast<unsigned>(ctas < 65535LL * 16 ? ctas : 65535LL * 16);
  return launch_pdl(bf16_gemv_kernel<M, S>, dim3(grid), dim3(kWarps * 32), 0, stream, static_cast<const uint4*>(x),
                    static_cast<const uint4*>(w), bias, bias_t, N, K / 8, y, yt);
}

template <int M>
cudaError_t launch_split(int split, const void* x, const void* w, const void* bias, DType bias_t, int64_t N, int64_t K,
                         void* y, DType yt, cudaStream_t stream) {
  switch (split) {
    case 1: return launch<M, 1>(x, w, bias, bias_t, N, K, y, yt, stream);
    case 2: return launch<M, 2>(x, w, bias, bias_t, N, K, y, yt, stream);
    case 4: return launch<M, 4>(x, w, bias, bias_t, N, K, y, yt, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

int bf16_gemv_split() {
  const char* e = std::getenv("XQUANT_BF16_GEMV_SPLIT");
  if (!e) return kDefaultSplit;
  if (std::strcmp(e, "1") == 0) return 1;
  if (std::strcmp(e, "2") == 0) return 2;
  if (std::strcmp(e, "4") == 0) return 4;
  return 0;
}

bool bf16_gemv_fits(int64_t M, int64_t K, const void* x, const void* w, int split) {
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const int64_t max_k = split > 1 ? kGemvMaxSplitK : kGemvMaxK;
  return M >= 1 && M <= kGemvMaxRows && K > 0 && K <= max_k && K % 8 == 0 && aligned(x) && aligned(w);
}

cudaError_t bf16_gemv(const void* x, const void* w, const void* bias, DType bias_t, int64_t M, int64_t N, int64_t K,
                      void* y, DType yt, cudaStream_t stream, int split) {
  if (N <= 0) return cudaSuccess;
  switch (M) {
    case 1: return launch_split<1>(split, x, w, bias, bias_t, N, K, y, yt, stream);
    case 2: return launch_split<2>(split, x, w, bias, bias_t, N, K, y, yt, stream);
    case 3: return launch_split<3>(split, x, w, bias, bias_t, N, K, y, yt, stream);
    case 4: return launch_split<4>(split, x, w, bias, bias_t, N, K, y, yt, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace xqcuda
