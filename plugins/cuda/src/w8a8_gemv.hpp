// w8a8_gemv.hpp: the W8A8 product (INT8 or FP8 E4M3 codes on both sides,
// per-token x per-channel scales, bias) for a few activation rows: decode at
// batch 1..8.
//
// At such M the GEMM routes (cuBLASLt + our scaling pass, or CUTLASS with the
// scaling fused) run tiles built for M >= 64: on the H200 the 32-layer
// Llama-3.1-8B config decoded in W8A8 at 3.91 ms (INT8) and 4.07 ms (FP8) a
// token against 1.9 ms for reading its 8 GB of weights (docs/results.md,
// "Session twenty-five on the H200"). Here the weight is streamed once with
// 16-byte loads and multiplied on the tensor cores with the batch as the
// n8 side of mma.sync m16n8k32 (s8 -> s32 exact; e4m3 -> f32, sm_89+): the
// arrangement Marlin uses for small batches (arXiv:2408.11743, section 4),
// here without a repacked layout: a dot product does not care in which order
// its K terms come, so each lane takes 16 contiguous bytes of a row and the
// activation bytes of the same K positions (w8a8_gemv.cu says how they map
// onto the fragments). The warps of a CTA split one tile's K.
//
// INT8 sums are exact in int32, scaled as (float(acc) * s_w) * s_x + bias with
// every step rounded (no FMA contraction), so the results are a host
// reference's bit for bit. FP8 accumulates in the tensor cores' f32, as the
// FP8 GEMMs do.
#pragma once

#include <cstdint>

#include "kernels.hpp"

namespace xqcuda {

constexpr int64_t kW8GemvMaxRows = 8;
// The fused form's shared rows, M x (K + 16) bytes, at most this much (under
// the 48 KB a CTA gets without opting in, beside the 4 KB of split sums;
// with 4 CTAs an SM, 176 KB of the H200's 228): M = 1 up to K = 40944, M = 2
// up to 20464, M = 8 up to 5104 -- decode's q|k|v, gate|up and o_proj rows
// of Llama-3.1-8B at batch 1..8, its down_proj (K = 14336) at batch 1..2.
constexpr int64_t kW8GemvFusedSharedBytes = 40 * 1024;
// And only for one row: every CTA quantizes all M rows (M reductions over
// the CTA, M x K x 2 bytes read), which at M = 4 and 8 cost more than the
// separate kernel saves (H200, bench_w8_gemv.py: 4096 x 28672 at M = 8,
// 75.7 us fused against 37.3 separate; M = 2 within +-10% either way; M = 1
// 5-29% faster on every shape; docs/cuda.md "The fused activation quantization").
constexpr int64_t kW8GemvFusedMaxRows = 1;

struct W8Gemv {
  DType codes = DType::I8;  // I8 or F8E4M3, both operands
  const void* xq = nullptr;  // [M, K] activation codes
  const float* sa = nullptr;  // [M] per-token scales, or null: sa_const for every row
  float sa_const = 1.f;
  const void* w = nullptr;  // [N, K] weight codes
  const float* sw = nullptr;  // [N] per-row weight scales
  const void* bias = nullptr;  // [N] in bias_t, or null
  DType bias_t = DType::F32;
  int64_t M = 0, N = 0, K = 0;
  void* y = nullptr;  // [M, N] in y_t (F32, F16 or BF16)
  DType y_t = DType::BF16;
  // The fused form: when x16 is set, xq / sa / sa_const are not read; the
  // kernel quantizes the [M, K] BF16 or F16 rows at x16 itself (per token,
  // or with static_scale when > 0), as quantize_act would, bit for bit.
  const void* x16 = nullptr;
  DType x16_t = DType::BF16;
  float static_scale = 0.f;
};

// Whether the kernel runs this problem on a GPU of compute capability cc:
// 1 <= M <= kW8GemvMaxRows, K and N multiples of 16, the codes 16-byte
// aligned, FP8 only from sm_89. XQUANT_CUDA_W8_GEMV=0 (read per call) keeps
// every M on the GEMM route: the A/B switch of bench/cuda/bench_w8a8.py.
bool w8a8_gemv_fits(const W8Gemv& p, int cc_major, int cc_minor);

// Whether the fused form runs p (x16: the [M, K] activation rows of type
// x_t): w8a8_gemv_fits, BF16/F16 rows 16-byte aligned, M <=
// kW8GemvFusedMaxRows, M x (K + 16) <= kW8GemvFusedSharedBytes. XQUANT_CUDA_W8_GEMV_FUSED=0 (read per call) keeps
// the separate quantization kernel (A/B switch).
bool w8a8_gemv_fused_fits(const W8Gemv& p, DType x_t, const void* x16, int cc_major, int cc_minor);

// How many of a CTA's 8 warps share one 16-row tile's K (1, 2, 4 or 8): 8,
// the fastest on every shape and M = 1..8 measured on the H200 (docs/cuda.md,
// "The few-row W8A8 kernel"); XQUANT_CUDA_W8_GEMV_SPLIT=1|2|4|8 forces
// another (benchmark); 0 when that variable holds anything else.
int w8a8_gemv_split();
// The weight steps a lane has in flight (4 or 8; w8a8_gemv.cu); 4 unless
// XQUANT_CUDA_W8_GEMV_UNROLL=4|8 says otherwise (benchmark); 0 when that
// variable holds anything else.
int w8a8_gemv_unroll();

cudaError_t w8a8_gemv(const W8Gemv& p, int split, int unroll, cudaStream_t stream);

}  // namespace xqcuda
