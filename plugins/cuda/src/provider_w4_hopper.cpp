// provider_w4_hopper.cpp: the provider's use of the Hopper W4A16 GEMM
// (w4a16_hopper.hpp): whether it is on, the second weight copy it reads, and
// the dispatch by batch size. Without the CUTLASS build (no
// XQUANT_CUDA_HOPPER_W4) or off sm_90 nothing here is used and every W4A16
// QMATMUL takes the mma.sync kernel or dequant + cuBLASLt as before.
//
// Knobs (environment, read once): XQUANT_CUDA_W4_HOPPER=0 turns the path off
// (no second copy is made); XQUANT_CUDA_W4_HOPPER_MIN_M / _MAX_M bound the
// batch sizes it serves by default (unset: from default_min_m(N) rows, below).
// QMATMUL's op.i[7] = 3 forces it where the weight has the copy (1 and 2
// force the older paths). The copy is skipped,
// not an error, when the device has no room for it.
// Read at each call (for A/B runs in one process, as bench/cuda/bench_w4_hopper.py
// does): XQUANT_CUDA_W4_HOPPER_SCHEDULE = auto (default) | coop | pingpong |
// wide | narrow | k128 picks the schedule (w4a16_hopper.hpp); XQUANT_CUDA_W4_HOPPER_PLAN=0
// rebuilds the kernel parameters on every call instead of reusing them.
#include "provider.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace xqcuda {
#ifdef XQUANT_CUDA_HOPPER_W4
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw xquant::sdk::Error(XQ_ERR_DEVICE, xquant::sdk::format("cuda: %s failed: %s", what, cudaGetErrorString(e)));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

W4HSchedule schedule_from_env() {
  const char* v = std::getenv("XQUANT_CUDA_W4_HOPPER_SCHEDULE");
  if (!v || !*v || std::strcmp(v, "auto") == 0) return W4HSchedule::Auto;
  for (W4HSchedule s : {W4HSchedule::Coop, W4HSchedule::Pingpong, W4HSchedule::Wide, W4HSchedule::Narrow,
                        W4HSchedule::K128})
    if (std::strcmp(v, w4h_schedule_name(s)) == 0) return s;
  throw xquant::sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                           xquant::sdk::format("cuda: XQUANT_CUDA_W4_HOPPER_SCHEDULE=%s: expected auto, coop, "
                                               "pingpong, wide, narrow or k128",
                                               v));
}

bool cached_params_from_env() {
  const char* v = std::getenv("XQUANT_CUDA_W4_HOPPER_PLAN");
  return !(v && std::atol(v) == 0);
}

// The smallest batch the default dispatch gives this kernel for a weight of N
// output rows (below it the TMA-ring GEMV or the mma.sync GEMM), unless
// XQUANT_CUDA_W4_HOPPER_MIN_M sets one threshold for every N. On an H100
// (2026-12-05, bench/cuda/bench_w4_mid.py; docs/cuda.md, "W4A16 between the
// GEMV and the Hopper GEMM") the mma.sync GEMM slows down past 32 rows on every
// shape (48 rows: 1.13-1.20x bf16 cuBLAS on 14336x4096 and 8192x28672 against
// this kernel's 1.59-2.05x), and from 24 rows this kernel leads on the three
// weights of 14336 rows and more (8192x28672 at 32: 84.9 against 96.4 us;
// 4096x28672: 46.1 against 58.7), while on 4096 and 6144 rows the mma.sync
// GEMM keeps 24 and 32 (4096x4096: 16.3 against 19.8 us). With the K-128
// tiles of 16 and 32 tokens (w4h_resolve) this kernel also leads on those
// three tall weights from 13 rows alone (at 16: 8192x28672 66.3 against 67.3 us,
// 4096x28672 37.2 against 40.6, 4096x14336 20.8 against 24.8), while on
// 4096 rows the mma.sync GEMM still keeps 32 (15.2 against 16.3 us). In the
// engine it does not (8 layers of the Llama-3.1-8B config, W4A16 g128,
// `xquant bench --concurrency 16`, H100, session forty: TPOT 1.311 / 1.316 ms
// from 13 rows against 1.298 / 1.300 from 17, both rounds), while from 17 rows
// it does (concurrency 32: 1.527 / 1.534 against 1.568 / 1.561 with the
// 64-token tiles there): the tall weights take it from 17 rows.
constexpr int64_t kMinM = 33;
constexpr int64_t kTallN = 8192;  // weights this tall take it from kTallMinM rows
constexpr int64_t kTallMinM = 17;
int64_t default_min_m(int64_t N) { return N >= kTallN ? kTallMinM : kMinM; }

}  // namespace
#endif

void Provider::init_w4_hopper() {
#ifdef XQUANT_CUDA_HOPPER_W4
  const char* off = std::getenv("XQUANT_CUDA_W4_HOPPER");
  w4_hopper_ok_ = cc_major_ == 9 && cc_minor_ == 0 && !(off && std::atol(off) == 0);
  if (const char* env = std::getenv("XQUANT_CUDA_W4_HOPPER_MIN_M")) w4_hopper_min_m_ = std::max(1L, std::atol(env));
  if (const char* env = std::getenv("XQUANT_CUDA_W4_HOPPER_MAX_M")) w4_hopper_max_m_ = std::max(1L, std::atol(env));
#endif
}

void Provider::prepare_w4_hopper(xq_qweight* w, const int8_t* d_codes, const float* d_scales, const int8_t* d_zp) {
#ifdef XQUANT_CUDA_HOPPER_W4
  if (!w4_hopper_ok_) return;
  W4HopperLayout& H = w->HL;
  H.N = w->N;
  H.K = w->K;
  H.group_size = w->L.gs_shift >= 31 ? w->K : (int64_t{1} << w->L.gs_shift);
  H.n_groups = w->L.n_groups;
  if (!w4h_supported(H.N, H.K, H.group_size, nullptr)) return;  // the older paths serve it
  const size_t scale_bytes = static_cast<size_t>(H.N * H.n_groups) * 2;
  // The copy only speeds things up: without room for it the weight stays on the older paths.
  if (cudaMalloc(&w->hq, w4h_weight_bytes(H)) != cudaSuccess || cudaMalloc(&w->hs, scale_bytes) != cudaSuccess ||
      cudaMalloc(&w->hz, scale_bytes) != cudaSuccess) {
    cudaGetLastError();
    for (void** p : {&w->hq, &w->hs, &w->hz}) {
      if (*p) cudaFree(*p);
      *p = nullptr;
    }
    return;
  }
  check(w4h_pack(H, d_codes, w->perm, w->hq, stream_), "w4h_pack");
  check(w4h_pack_scales(H, d_scales, d_zp, w->hs, w->hz, stream_), "w4h_pack_scales");
#else
  (void)w;
  (void)d_codes;
  (void)d_scales;
  (void)d_zp;
#endif
}

bool Provider::run_qmatmul_w4_hopper(const xq_op& op) {
#ifdef XQUANT_CUDA_HOPPER_W4
  const xq_qweight& w = *op.qweight;
  const xq_device_tensor &x = op.src[0], &y = op.dst;
  const int64_t M = x.ndim ? xquant::sdk::rows_of(x) : 0, K = w.K, N = w.N;
  const int64_t force = op.i[7];
  const int64_t min_m = w4_hopper_min_m_ > 0 ? w4_hopper_min_m_ : default_min_m(N);
  const bool wanted = force == 3 || (force == 0 && M >= min_m && M <= w4_hopper_max_m_);
  // bf16 only (the f16 instantiation would double the compile); the TMA store needs 16-byte rows.
  if (!w.hq || !wanted || x.dtype != XQ_DTYPE_BF16 || !aligned16(y.data)) return false;
  const void* xs = x.data;
  if (w.perm || !aligned16(x.data)) {
    void* buf = s_x_.get(static_cast<size_t>(M * K) * 2);
    check(gather_columns(x.data, DType::BF16, M, K, K, w.perm, buf, K, stream_), "gather_columns");
    xs = buf;
  }
  const void* bias = nullptr;
  bool bias_f32 = false;
  if (op.src[2].data) {
    bias_f32 = op.src[2].dtype == XQ_DTYPE_F32;
    bias = bias_f32 ? op.src[2].data : bias_as(op.src[2], DType::BF16, N);
  }
  const W4HSchedule schedule = schedule_from_env();
  const size_t ws_bytes = w4h_workspace_bytes(w.HL, M, sm_count_, schedule);
  void* ws = s_part_.get(ws_bytes);
  const cudaError_t e = w4h_gemm(w.HL, w.hq, w.hs, w.hz, xs, M, y.data, bias, bias_f32, ws, ws_bytes, sm_count_,
                                 stream_, schedule, cached_params_from_env());
  if (e == cudaErrorNotSupported) return false;  // CUTLASS refused the problem before launching anything
  check(e, "w4h_gemm");
  return true;
#else
  (void)op;
  return false;
#endif
}

}  // namespace xqcuda
