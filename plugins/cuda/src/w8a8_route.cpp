// w8a8_route.cpp: which GEMM runs a W8A8 product (INT8 or FP8 E4M3): the
// CUTLASS kernels with the scaling fused into the epilogue (sm_90a,
// cutlass_w8a8.hpp), or cuBLASLt followed by our scaling pass (w8a8.cu).
//
// XQUANT_CUDA_W8A8_GEMM picks, read at every call so one process (the
// benchmark, the tests) can measure both paths:
//   auto (default)  CUTLASS on sm_90 when the problem fits and the measured
//                   numbers favour it (auto_takes_cutlass below), else cuBLASLt;
//   cutlass         CUTLASS always; a problem it cannot take is an error, so
//                   a forced run never silently measures the other path;
//   cublaslt        cuBLASLt always (the behaviour before the CUTLASS kernels).
#include "provider.hpp"

#include <cstdlib>
#include <cstring>

namespace xqcuda {
namespace {

using xquant::sdk::Error;
using xquant::sdk::format;

enum class W8Route { Auto, Cutlass, CublasLt };

W8Route route_from_env() {
  const char* e = std::getenv("XQUANT_CUDA_W8A8_GEMM");
  if (!e || !*e || std::strcmp(e, "auto") == 0) return W8Route::Auto;
  if (std::strcmp(e, "cutlass") == 0) return W8Route::Cutlass;
  if (std::strcmp(e, "cublaslt") == 0) return W8Route::CublasLt;
  throw Error(XQ_ERR_INVALID_ARGUMENT,
              format("cuda: XQUANT_CUDA_W8A8_GEMM=%s: expected auto, cutlass or cublaslt", e));
}

#ifdef XQUANT_CUDA_CUTLASS
// What auto takes, from bench/cuda/bench_w8a8.py on an H200 (docs/cuda.md,
// "W8A8 GEMM routes"): INT8 CUTLASS was faster than or level with cuBLASLt
// + scaling pass at every M of the four shapes; FP8 CUTLASS (periodic f32
// promotion) was 1.3-6.8x slower at M >= 128 and not reliably ahead below,
// so FP8 stays on cuBLASLt unless forced.
bool auto_takes_cutlass(DType ab) { return ab == DType::I8; }
constexpr size_t kCutlassWorkspace = 1u << 20;
#endif

}  // namespace

bool Provider::run_w8a8_cutlass(ScaledMM p, const xq_device_tensor& bias) {
  const W8Route route = route_from_env();
  if (route == W8Route::CublasLt) return false;
#ifdef XQUANT_CUDA_CUTLASS
  const bool fits = cc_major_ == 9 && cc_minor_ == 0 && cutlass_scaled_mm_fits(p);
  if (route == W8Route::Auto && (!fits || !auto_takes_cutlass(p.ab))) return false;
  if (!fits)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("cuda: XQUANT_CUDA_W8A8_GEMM=cutlass, but the CUTLASS W8A8 GEMM does not take "
                       "[M=%lld, N=%lld, K=%lld] here (needs sm_90, K and N multiples of 16, BF16/F16 output, "
                       "16-byte aligned operands)",
                       static_cast<long long>(p.M), static_cast<long long>(p.N), static_cast<long long>(p.K)));
  p.bias = bias_as(bias, p.y_type, p.N);
  const cudaError_t e = cutlass_scaled_mm(p, s_ws_.get(kCutlassWorkspace), kCutlassWorkspace, sm_count_, stream_);
  if (e == cudaSuccess) return true;
  if (e == cudaErrorNotSupported && route == W8Route::Auto) return false;
  throw Error(XQ_ERR_DEVICE, format("cuda: CUTLASS W8A8 GEMM (%s) [M=%lld, N=%lld, K=%lld] failed: %s",
                                    cutlass_scaled_mm_config(p.ab, p.M), static_cast<long long>(p.M),
                                    static_cast<long long>(p.N), static_cast<long long>(p.K),
                                    cudaGetErrorString(e)));
#else
  if (route == W8Route::Cutlass)
    throw Error(XQ_ERR_UNSUPPORTED,
                "cuda: XQUANT_CUDA_W8A8_GEMM=cutlass, but this build has no CUTLASS GEMMs (scripts/fetch-cutlass.sh)");
  (void)p;
  (void)bias;
  return false;
#endif
}

}  // namespace xqcuda
