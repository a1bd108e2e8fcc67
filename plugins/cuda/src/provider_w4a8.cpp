// provider_w4a8.cpp: the provider's use of the Hopper W4A8-FP8 GEMM
// (w4a8_hopper.hpp): whether it is on, the third weight copy it reads (codes
// in its lookup encoding, per-group FP8 tables, channel scales), and QMATMUL
// through it (per-token FP8 activation quantization, then the GEMM with the
// scales and bias in its epilogue). Without the CUTLASS build (no
// XQUANT_CUDA_HOPPER_W4A8) or off sm_90 nothing here is used.
//
// Which weights take it (docs/cuda.md "W4A8 on Hopper" has the measurement):
// - a W4A8-FP8 quant tensor (bits 4, act_scheme DYNAMIC_TOKEN, act_bits
//   XQ_BITS_F8_E4M3): packed as a W4 weight plus this copy; its QMATMUL
//   takes W4A8 from XQUANT_CUDA_W4A8_MIN_M (default 64) tokens, where it
//   beat the W4A16 Hopper kernel on the H200, and the W4A16 paths below
//   (faster there, and exact to bf16 activations);
// - a W4A16 weight only when asked: XQUANT_CUDA_W4A8=1 gives it the copy and
//   the same dispatch, =2 the copy only (QMATMUL's op.i[7] = 6 forces the
//   W4A8 GEMM wherever the copy exists). That changes a W4A16 checkpoint's
//   numerics (activations rounded to E4M3 per token, weights to E4M3 per
//   group: ~3.7e-2 relative error against the exact product on random data,
//   2.8e-3 for W4A16), so it is not the default.
// XQUANT_CUDA_W4A8=0 turns the kernel off (W4A8-FP8 weights then run as W4A16).
#include "provider.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>

namespace xqcuda {
#ifdef XQUANT_CUDA_HOPPER_W4A8
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw xquant::sdk::Error(XQ_ERR_DEVICE, xquant::sdk::format("cuda: %s failed: %s", what, cudaGetErrorString(e)));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace
#endif

bool Provider::is_w4a8_fp8_scheme(const xq_quant_tensor& q) {
  return q.bits == 4 && q.act_scheme == XQ_ACT_DYNAMIC_TOKEN && q.act_bits == XQ_BITS_F8_E4M3;
}

void Provider::init_w4a8() {
#ifdef XQUANT_CUDA_HOPPER_W4A8
  const char* on = std::getenv("XQUANT_CUDA_W4A8");
  const long mode = on && *on ? std::atol(on) : -1;
  w4a8_ok_ = cc_major_ == 9 && cc_minor_ == 0 && mode != 0;
  w4a8_all_ = mode == 1 || mode == 2;
  w4a8_default_ = mode == 1;
  if (const char* env = std::getenv("XQUANT_CUDA_W4A8_MIN_M")) w4a8_min_m_ = std::max(1L, std::atol(env));
#endif
}

void Provider::prepare_w4a8(xq_qweight* w, const int8_t* d_codes, const float* d_scales, bool symmetric) {
#ifdef XQUANT_CUDA_HOPPER_W4A8
  if (!w4a8_ok_ || !(w4a8_all_ || w->w4a8_scheme) || !symmetric) return;  // the lookup table has no zero points
  W4A8Layout& A = w->A8L;
  A.N = w->N;
  A.K = w->K;
  A.group_size = w->L.gs_shift >= 31 ? w->K : (int64_t{1} << w->L.gs_shift);
  A.n_groups = w->L.n_groups;
  if (!w4a8h_supported(A.N, A.K, A.group_size, nullptr)) return;  // the W4A16 paths serve it
  // The copy only adds a path: without room for it the weight stays on the others.
  if (cudaMalloc(&w->a8q, w4a8h_weight_bytes(A)) != cudaSuccess ||
      cudaMalloc(&w->a8lut, w4a8h_lut_bytes(A)) != cudaSuccess ||
      cudaMalloc(reinterpret_cast<void**>(&w->a8ch), static_cast<size_t>(A.N) * sizeof(float)) != cudaSuccess) {
    cudaGetLastError();
    for (void** p : {&w->a8q, &w->a8lut, reinterpret_cast<void**>(&w->a8ch)}) {
      if (*p) cudaFree(*p);
      *p = nullptr;
    }
    return;
  }
  check(w4a8h_pack(A, d_codes, w->perm, w->a8q, stream_), "w4a8h_pack");
  check(w4a8h_pack_scales(A, d_scales, w->a8lut, w->a8ch, stream_), "w4a8h_pack_scales");
#else
  (void)w;
  (void)d_codes;
  (void)d_scales;
  (void)symmetric;
#endif
}

bool Provider::run_qmatmul_w4a8(const xq_op& op) {
#ifdef XQUANT_CUDA_HOPPER_W4A8
  const xq_qweight& w = *op.qweight;
  const xq_device_tensor &x = op.src[0], &y = op.dst;
  const int64_t M = x.ndim ? xquant::sdk::rows_of(x) : 0, K = w.K, N = w.N;
  const int64_t force = op.i[7];
  const bool wanted =
      force == kForceW4A8 || (force == 0 && (w4a8_default_ || w.w4a8_scheme) && M >= w4a8_min_m_);
  // 16-bit activations; BF16 output only (the one instantiated); the TMA store needs 16-byte rows.
  if (!w.a8q || !wanted || (x.dtype != XQ_DTYPE_BF16 && x.dtype != XQ_DTYPE_F16) || y.dtype != XQ_DTYPE_BF16 ||
      !aligned16(y.data))
    return false;
  const DType T = x.dtype == XQ_DTYPE_BF16 ? DType::BF16 : DType::F16;
  const void* xs = x.data;
  if (w.perm) {
    void* buf = s_x_.get(static_cast<size_t>(M * K) * 2);
    check(gather_columns(x.data, T, M, K, K, w.perm, buf, K, stream_), "gather_columns");
    xs = buf;
  }
  void* xq = s_acc_.get(static_cast<size_t>(M * K));
  auto* x_scales = static_cast<float*>(s_scale_.get(static_cast<size_t>(M) * sizeof(float)));
  check(quantize_act(xs, T, M, K, xq, DType::F8E4M3, x_scales, 0.f, stream_), "quantize_act (fp8, per token)");
  const auto* bias = static_cast<const float*>(bias_as(op.src[2], DType::F32, N));
  const size_t ws_bytes = w4a8h_workspace_bytes(w.A8L, M, sm_count_);
  void* ws = s_part_.get(ws_bytes);
  const cudaError_t e =
      w4a8h_gemm(w.A8L, w.a8q, w.a8lut, w.a8ch, xq, x_scales, M, y.data, bias, ws, ws_bytes, sm_count_, stream_);
  if (e == cudaErrorNotSupported) return false;  // CUTLASS refused the problem before launching anything
  check(e, "w4a8h_gemm");
  return true;
#else
  (void)op;
  return false;
#endif
}

}  // namespace xqcuda
