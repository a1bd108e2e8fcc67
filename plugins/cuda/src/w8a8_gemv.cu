// w8a8_gemv.cu: the few-row W8A8 product of w8a8_gemv.hpp.
#include "w8a8_gemv.hpp"

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "act_quant.cuh"
#include "common.cuh"
#include "pdl.cuh"

namespace xqcuda {

namespace {

constexpr int kWarps = 8;      // warps per CTA
constexpr int64_t kStep = 64;  // bytes of K per step: 4 lanes of a row x 16 bytes
constexpr int kDefaultUnroll = 4;
// The fused form's shared rows: K + 16 bytes apart, so the two rows a
// quarter-warp's 16-byte loads touch start 4 banks apart (K % 128 == 0 would
// put them on the same banks).
constexpr int64_t kRowPad = 16;

// One m16n8k32 tensor-core product, D = A.B + D (PTX ISA, "Warp-level matrix
// multiply-accumulate instructions", mma.m16n8k32 with 8-bit inputs). Lane
// (g = lane / 4, t = lane % 4) holds A's rows g and g + 8 at k = 4t..4t+3
// (a[0], a[1]) and 16+4t..16+4t+3 (a[2], a[3]), B's column g at the same k
// (b0, b1), and D's rows g, g + 8 at columns 2t, 2t + 1 (d[0..1], d[2..3]).
__device__ __forceinline__ void mma_k32(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, int32_t (&d)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_k32(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, float (&d)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890  // e4m3 mma.sync: sm_89+ (w8a8_gemv_fits keeps FP8 on sm_90)
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// The fused form (W8Gemv::x16): the CTA quantizes the M activation rows
// itself into shared memory (stride K + kRowPad), their scales into sa_s,
// with quantize_act's arithmetic (act_quant.cuh, which w8a8.cu's kernels
// share), so the codes and scales are the separate kernel's bit for bit.
// Each CTA reads the rows (M x K x 2 bytes, from L2 after the first CTAs)
// instead of one kernel writing and every CTA reading the codes: one launch
// and one dependency less per Linear at decode (taken at M = 1 only,
// w8a8_gemv.hpp kW8GemvFusedMaxRows says why).
__device__ float cta_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // red is reused token after token
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = 0.f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) r = fmaxf(r, red[i]);
  return r;
}

template <typename T>
__device__ void quantize_rows_to_shared(const T* __restrict__ x, int M, int64_t K, bool fp8, float static_scale,
                                        uint8_t* xs, float* sa_s) {
  __shared__ float red[kWarps];
  const int n8 = static_cast<int>(K / 8);
  for (int m = 0; m < M; ++m) {
    const uint4* xr = reinterpret_cast<const uint4*>(x + static_cast<int64_t>(m) * K);
    float scale = static_scale;
    if (static_scale <= 0.f) {
      float amax = 0.f;
      for (int i = threadIdx.x; i < n8; i += kWarps * 32) amax = act_amax8<T>(__ldg(xr + i), amax);
      scale = act_scale(cta_max(amax, red), fp8);
    }
    if (threadIdx.x == 0) sa_s[m] = scale;
    const float inv = 1.0f / scale;
    uint2* qr = reinterpret_cast<uint2*>(xs + static_cast<int64_t>(m) * (K + kRowPad));
    for (int i = threadIdx.x; i < n8; i += kWarps * 32) qr[i] = act_codes8<T>(__ldg(xr + i), inv, fp8);
  }
  __syncthreads();
}

// CTA: kWarps warps over kWarps / kSplit tiles of 16 weight rows; the kSplit
// warps of a tile take its 64-byte K steps round robin and add up at the end.
// kUnroll: the steps whose weight loads a lane has in flight at once (2 x 16
// bytes each); 8 keeps 256 bytes a lane in flight and needs 2 CTAs an SM's
// registers, 4 half that with 4 CTAs.
//
// The K order: lane (g, t) loads the 16 bytes at k0 = 64 s + 16 t of rows g
// and g + 8 and of token g, and feeds bytes 0-7 to one mma and 8-15 to the
// next, as fragment k = 4t..4t+3 (bytes 0-3, then 8-11) and 16+4t..16+4t+3
// (bytes 4-7, then 12-15). A and B see the same permutation of the step's
// 32 K positions, so each mma adds exactly the terms of those positions; the
// rows are read with plain 16-byte loads, no repacked layout.
//
// Tokens m >= M are zero columns of B; rows past N do not exist (N % 16 == 0
// makes a tile all in or all out), and a lane whose 16 bytes lie past K
// (K % 16 == 0; K % 64 may not be) contributes zeros.
//
// PDL as bf16_gemv.cu: the weights are constants, so the first kUnroll steps'
// loads go out before griddepcontrol.wait; the activation codes and their
// scales (the quantization kernel's output) are read after it.
// kX16: 0 = the codes come quantized (x, sa / sa_const); 1 = BF16, 2 = F16
// rows at x16 that the CTA quantizes itself (dynamic per token when
// static_scale <= 0), its codes in dynamic shared memory.
template <int kSplit, int kUnroll, bool kFp8, int kX16 = 0>
__global__ void __launch_bounds__(kWarps * 32, kUnroll >= 8 ? 2 : 4)
    w8a8_gemv_kernel(const uint8_t* __restrict__ x, const float* __restrict__ sa, float sa_const,
                     const uint8_t* __restrict__ w, const float* __restrict__ sw, const void* __restrict__ bias,
                     DType bias_t, int M, int64_t N, int64_t K, void* y, DType yt, const void* __restrict__ x16,
                     float static_scale) {
  using Acc = std::conditional_t<kFp8, float, int32_t>;
  constexpr int kTiles = kWarps / kSplit;
  extern __shared__ __align__(16) uint8_t xs[];
  __shared__ float sa_s[kW8GemvMaxRows];
  pdl_launch_dependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int slice = warp % kSplit;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kTiles + warp / kSplit) * 16;
  const bool rows_in = row0 < N;
  const int64_t steps = (K + kStep - 1) / kStep;
  const uint8_t* w_lo = w + (row0 + g) * K + t * 16;
  const uint8_t* w_hi = w_lo + 8 * K;

  uint4 lo[kUnroll], hi[kUnroll];
  auto load = [&](int64_t s0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t s = s0 + static_cast<int64_t>(u) * kSplit;
      const bool in = rows_in && s < steps && s * kStep + t * 16 < K;
      // Streamed once: evict first.
      lo[u] = in ? __ldcs(reinterpret_cast<const uint4*>(w_lo + s * kStep)) : make_uint4(0, 0, 0, 0);
      hi[u] = in ? __ldcs(reinterpret_cast<const uint4*>(w_hi + s * kStep)) : make_uint4(0, 0, 0, 0);
    }
  };
  load(slice);
  // The weight scales of this lane's two output rows, also constants: read
  // now rather than in the epilogue, where they were one more round trip
  // after the last product.
  float sw_lane[2] = {0.f, 0.f};
  if (rows_in) sw_lane[0] = __ldg(sw + row0 + g), sw_lane[1] = __ldg(sw + row0 + g + 8);
  pdl_wait();

  if constexpr (kX16 != 0) {
    using T = std::conditional_t<kX16 == 1, __nv_bfloat16, __half>;
    quantize_rows_to_shared(static_cast<const T*>(x16), M, K, kFp8, static_scale, xs, sa_s);
  }
  // The codes and scales: the CTA's own (shared) or the quantization kernel's.
  const uint8_t* const codes = kX16 != 0 ? xs : x;
  const float* const scales = kX16 != 0 ? sa_s : sa;
  const int64_t x_stride = kX16 != 0 ? K + kRowPad : K;
  const uint8_t* xg = codes + static_cast<int64_t>(g) * x_stride + t * 16;
  const bool token_in = g < M;
  Acc acc[4] = {};
  for (int64_t s0 = slice; rows_in && s0 < steps; s0 += static_cast<int64_t>(kSplit) * kUnroll) {
    if (s0 != slice) load(s0);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t s = s0 + static_cast<int64_t>(u) * kSplit;
      if (s >= steps) break;  // the same for the whole warp: the mma needs every lane
      const bool in = token_in && s * kStep + t * 16 < K;
      uint4 xv = make_uint4(0, 0, 0, 0);
      if constexpr (kX16 != 0) {
        if (in) xv = *reinterpret_cast<const uint4*>(xg + s * kStep);
      } else {
        if (in) xv = __ldg(reinterpret_cast<const uint4*>(xg + s * kStep));
      }
      const uint32_t a0[4] = {lo[u].x, hi[u].x, lo[u].y, hi[u].y};
      const uint32_t a1[4] = {lo[u].z, hi[u].z, lo[u].w, hi[u].w};
      mma_k32(a0, xv.x, xv.y, acc);
      mma_k32(a1, xv.z, xv.w, acc);
    }
  }

  if constexpr (kSplit > 1) {
    __shared__ Acc part[kWarps][4][32];
#pragma unroll
    for (int i = 0; i < 4; ++i) part[warp][i][lane] = acc[i];
    __syncthreads();
    if (slice != 0) return;
#pragma unroll
    for (int p = 1; p < kSplit; ++p)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[i] += part[warp + p][i][lane];
  }
  if (!rows_in) return;
  // (float(acc) * s_w) * s_x, then + bias, each step rounded on its own (the
  // _rn intrinsics are never contracted into an FMA), so a host reference
  // computes the same bits (tests/cuda/test_w8a8_gemv.cpp). The products in
  // the order of the CUTLASS epilogues (cutlass_w8a8_sm90.cuh and the fused
  // MoE GEMM's moe_w8a8_sm90.cuh: s_x * (s_w * acc)), so an expert's few
  // rows give the fused MoE GEMM's bits: with s_x first, one output in ~10^4
  // rounded the other way (MoeW8a8 on an H100, 2026-12-05).
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = 2 * t + (i & 1);
    if (m >= M) continue;
    const int64_t n = row0 + g + (i >= 2 ? 8 : 0);
    float r = __fmul_rn(__fmul_rn(static_cast<float>(acc[i]), sw_lane[i >= 2]), scales ? scales[m] : sa_const);
    if (bias) r = __fadd_rn(r, load_as_float(bias, bias_t, n));
    store_from_float(y, yt, static_cast<int64_t>(m) * N + n, r);
  }
}

template <int kSplit, int kUnroll, bool kFp8, int kX16>
cudaError_t launch_form(const W8Gemv& p, cudaStream_t stream) {
  constexpr int64_t kTiles = kWarps / kSplit;
  const int64_t ctas = (p.N / 16 + kTiles - 1) / kTiles;
  const size_t smem = kX16 != 0 ? static_cast<size_t>(p.M * (p.K + kRowPad)) : 0;
  return launch_pdl(w8a8_gemv_kernel<kSplit, kUnroll, kFp8, kX16>, dim3(static_cast<unsigned>(ctas)), dim3(kWarps * 32),
                    smem, stream, static_cast<const uint8_t*>(p.xq), p.sa, p.sa_const, static_cast<const uint8_t*>(p.w),
                    p.sw, p.bias, p.bias_t, static_cast<int>(p.M), p.N, p.K, p.y, p.y_t, p.x16, p.static_scale);
}

template <int kSplit, int kUnroll, bool kFp8>
cudaError_t launch(const W8Gemv& p, cudaStream_t stream) {
  if (!p.x16) return launch_form<kSplit, kUnroll, kFp8, 0>(p, stream);
  return p.x16_t == DType::BF16 ? launch_form<kSplit, kUnroll, kFp8, 1>(p, stream)
                                : launch_form<kSplit, kUnroll, kFp8, 2>(p, stream);
}

template <int kUnroll, bool kFp8>
cudaError_t launch_split(const W8Gemv& p, int split, cudaStream_t stream) {
  switch (split) {
    case 1: return launch<1, kUnroll, kFp8>(p, stream);
    case 2: return launch<2, kUnroll, kFp8>(p, stream);
    case 4: return launch<4, kUnroll, kFp8>(p, stream);
    case 8: return launch<8, kUnroll, kFp8>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <bool kFp8>
cudaError_t launch_unroll(const W8Gemv& p, int split, int unroll, cudaStream_t stream) {
  return unroll == 8 ? launch_split<8, kFp8>(p, split, stream) : launch_split<4, kFp8>(p, split, stream);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool w8a8_gemv_fits(const W8Gemv& p, int cc_major, int cc_minor) {
  const char* e = std::getenv("XQUANT_CUDA_W8_GEMV");
  if (e && std::strcmp(e, "0") == 0) return false;
  const bool float_out = p.y_t == DType::F32 || p.y_t == DType::F16 || p.y_t == DType::BF16;
  // FP8 needs the sm_89+ e4m3 mma.sync; of this build's cubins (sm_90a, sm_80:
  // plugins/cuda/CMakeLists.txt) only sm_90a's has it: an sm_89 GPU runs the
  // sm_80 one, so FP8 takes the GEMM route there.
  const bool arch = p.codes == DType::I8 ? cc_major >= 8 : (p.codes == DType::F8E4M3 && cc_major == 9 && cc_minor == 0);
  return arch && float_out && p.M >= 1 && p.M <= kW8GemvMaxRows && p.K > 0 && p.K % 16 == 0 && p.N > 0 &&
         p.N % 16 == 0 && p.sw && aligned16(p.xq) && aligned16(p.w);
}

bool w8a8_gemv_fused_fits(const W8Gemv& p, DType x_t, const void* x16, int cc_major, int cc_minor) {
  const char* e = std::getenv("XQUANT_CUDA_W8_GEMV_FUSED");
  if (e && std::strcmp(e, "0") == 0) return false;
  if (x_t != DType::BF16 && x_t != DType::F16) return false;
  if (!x16 || !aligned16(x16) || p.M > kW8GemvFusedMaxRows || p.M * (p.K + kRowPad) > kW8GemvFusedSharedBytes)
    return false;
  W8Gemv codes = p;  // the rest as for quantized rows; codes live in shared memory
  codes.xq = p.w;    // (an aligned stand-in: xq itself is not read)
  return w8a8_gemv_fits(codes, cc_major, cc_minor);
}

int w8a8_gemv_split() {
  if (const char* e = std::getenv("XQUANT_CUDA_W8_GEMV_SPLIT")) {
    const int s = std::atoi(e);
    return s == 1 || s == 2 || s == 4 || s == 8 ? s : 0;
  }
  return kWarps;
}

int w8a8_gemv_unroll() {
  if (const char* e = std::getenv("XQUANT_CUDA_W8_GEMV_UNROLL")) {
    const int u = std::atoi(e);
    return u == 4 || u == 8 ? u : 0;
  }
  return kDefaultUnroll;
}

cudaError_t w8a8_gemv(const W8Gemv& p, int split, int unroll, cudaStream_t stream) {
  if (p.M < 1 || p.M > kW8GemvMaxRows || p.N % 16 != 0 || p.K % 16 != 0 || (unroll != 4 && unroll != 8))
    return cudaErrorInvalidValue;
  if (p.x16 && ((p.x16_t != DType::BF16 && p.x16_t != DType::F16) || p.M * (p.K + kRowPad) > kW8GemvFusedSharedBytes))
    return cudaErrorInvalidValue;
  if (p.N == 0) return cudaSuccess;
  return p.codes == DType::F8E4M3 ? launch_unroll<true>(p, split, unroll, stream)
                                  : launch_unroll<false>(p, split, unroll, stream);
}

}  // namespace xqcuda
