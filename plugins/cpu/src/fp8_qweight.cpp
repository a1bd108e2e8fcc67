// fp8_qweight.cpp: the `cpu` provider's FP8 E4M3 weights (canonical tensors
// with bits XQ_BITS_F8_E4M3, xq_tensor.h), a reference path:
//
//   prepare:  every code decoded once to its exact float value (no scale),
//             scales expanded to one per output row;
//   QMATMUL, FP8 W8A8 dynamic (act_bits XQ_BITS_F8_E4M3): each input row
//             quantized to E4M3 with s_x = max|x| / 448 (1 for an all-zero
//             row) and x * (1 / s_x) saturated to +-448, as the cuda provider's
//             k_quantize_act and vLLM's dynamic per-token FP8 quantization do;
//             then y[m][n] = s_x[m] * s_w[n] * sum_k q_x[m][k] * q_w[n][k]
//             (+ bias), the sum an F32 SGEMM over the decoded codes;
//   QMATMUL, weight-only: y[m][n] = s_w[n] * sum_k x[m][k] * q_w[n][k];
//   DEQUANTIZE: e4m3 value * scale, the canonical dequantization.
//
// Against vLLM's FP8 W8A8 dynamic GEMM ((q_x s_x)(q_w s_w), fp32 accumulation)
// this is exact in everything but the order of the fp32 sum: each product of
// two E4M3 values has at most 8 significant bits, so it is exact in float, and
// the scales apply once to the accumulated sum as in vLLM's epilogue. Memory:
// 4 bytes per weight (the decoded values), a reference, not a fast path.
#include "cpu.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <memory>

namespace xquant::cpu {

using sdk::format;

namespace {

[[noreturn]] void bad(const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, "cpu provider: FP8 weight: " + why);
}

// Per-calling-thread buffer for the quantized activations.
std::vector<float>& act_scratch() {
  thread_local std::vector<float> v;
  return v;
}

}  // namespace

float quantize_row_e4m3(const float* x, int64_t k, float* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[i]));
  float s = amax / sdk::kE4M3Max;
  if (!(s > 0.0f)) s = 1.0f;
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < k; ++i) q[i] = sdk::e4m3_to_f32(sdk::f32_to_e4m3(x[i] * inv));
  return s;
}

xq_qweight* prepare_fp8_qweight(const xq_quant_tensor& q) {
  if (q.bits != XQ_BITS_F8_E4M3) bad(format("float code format 0x%x is not FP8 E4M3", q.bits));
  if (q.rows <= 0 || q.cols <= 0) bad("rows and cols must be positive");
  if (!q.codes || !q.scales) bad("codes or scales missing");
  if (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR) bad("strategy must be channel or tensor");
  if (q.zero_points || q.g_idx) bad("FP8 weights have no zero points or g_idx");
  if (q.act_scheme != XQ_ACT_NONE) {
    if (q.act_scheme != XQ_ACT_DYNAMIC_TOKEN) bad("only dynamic per-token FP8 activations are supported");
    if (q.act_bits != XQ_BITS_F8_E4M3) bad(format("act_bits 0x%x (FP8 weights take FP8 E4M3 activations)", q.act_bits));
  }
  auto w = std::make_unique<xq_qweight>();
  w->rows = q.rows;
  w->cols = q.cols;
  w->n_groups = 1;
  w->bits = q.bits;
  w->fp8 = true;
  w->act_scheme = q.act_scheme;
  w->fp8_values.resize(static_cast<size_t>(q.rows * q.cols));
  for (int64_t i = 0; i < q.rows * q.cols; ++i) {
    const auto c = static_cast<uint8_t>(q.codes[i]);
    if ((c & 0x7F) == 0x7F) bad(format("NaN code at element %lld", static_cast<long long>(i)));
    w->fp8_values[static_cast<size_t>(i)] = sdk::e4m3_to_f32(c);
  }
  w->fp8_scales.resize(static_cast<size_t>(q.rows));
  for (int64_t r = 0; r < q.rows; ++r) {
    w->fp8_scales[r] = q.scales[q.strategy == XQ_STRATEGY_TENSOR ? 0 : r];
    if (!std::isfinite(w->fp8_scales[r])) bad(format("scale of row %lld is not finite", static_cast<long long>(r)));
  }
  return w.release();
}

void run_fp8_qmatmul(const Host& host, const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  const int64_t M = rows_of(op.src[0]), N = w.rows, K = w.cols;
  if (M == 0) return;
  const float* x = static_cast<const float*>(op.src[0].data);
  float* y = static_cast<float*>(op.dst.data);
  const float* bias = present(op.src[2]) ? static_cast<const float*>(op.src[2].data) : nullptr;
  std::vector<float> sx(static_cast<size_t>(M), 1.0f);
  const float* a = x;
  if (w.act_scheme == XQ_ACT_DYNAMIC_TOKEN) {
    std::vector<float>& qx = act_scratch();
    if (qx.size() < static_cast<size_t>(M * K)) qx.resize(static_cast<size_t>(M * K));
    for (int64_t m = 0; m < M; ++m) sx[m] = quantize_row_e4m3(x + m * K, K, qx.data() + m * K);
    a = qx.data();
  }
  sgemm_nt_blocked(host, M, N, K, 1.0f, a, K, w.fp8_values.data(), K, y, N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) y[m * N + n] = sx[m] * w.fp8_scales[n] * y[m * N + n] + (bias ? bias[n] : 0.0f);
}

void run_fp8_dequantize(const Host& host, const xq_op& op) {
  const xq_qweight& w = *op.qweight;
  const xq_dtype dt = op.dst.dtype;
  void* out = op.dst.data;
  host.parallel_for(static_cast<uint64_t>(w.rows), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r)
      for (int64_t c = 0; c < w.cols; ++c) {
        const int64_t i = static_cast<int64_t>(r) * w.cols + c;
        const float v = w.fp8_values[static_cast<size_t>(i)] * w.fp8_scales[r];
        if (dt == XQ_DTYPE_F32) static_cast<float*>(out)[i] = v;
        else if (dt == XQ_DTYPE_F16) static_cast<uint16_t*>(out)[i] = sdk::f32_to_f16(v);
        else static_cast<uint16_t*>(out)[i] = sdk::f32_to_bf16(v);
      }
  });
}

}  // namespace xquant::cpu
