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
// XQUANT_CUDA_W8A8_CONFIG=<name> (cutlass_w8a8_configs.cpp's names, e.g.
// i8_128x128_c1x1_sk; also read at every call) forces one CUTLASS kernel
// configuration on every W8A8 GEMM unless the route is cublaslt: a problem
// that configuration cannot take (other input type, F16 output on a
// BF16-only one, or anything off sm_90) is an error, not a fallback.
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

// The forced configuration's name, or null (unset, empty or "auto").
const char* forced_config_name() {
  const char* e = std::getenv("XQUANT_CUDA_W8A8_CONFIG");
  return (!e || !*e || std::strcmp(e, "auto") == 0) ? nullptr : e;
}

#ifdef XQUANT_CUDA_CUTLASS
// The configuration XQUANT_CUDA_W8A8_CONFIG names (checked against p), or
// false when it is unset.
bool forced_config(const ScaledMM& p, W8Config* out) {
  const char* name = forced_config_name();
  if (!name) return false;
  if (!w8_config_from_name(name, out))
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("cuda: XQUANT_CUDA_W8A8_CONFIG=%s: not a W8A8 kernel configuration (e.g. "
                       "i8_128x128_c2x1_coop, f8_128x128_c1x1_sk; docs/cuda.md lists them)",
                       name));
  if (!w8_config_takes(*out, p))
    throw Error(XQ_ERR_UNSUPPORTED,
                format("cuda: XQUANT_CUDA_W8A8_CONFIG=%s cannot run this GEMM (%s in, %s out): it takes %s "
                       "input and %s output",
                       name, p.ab == DType::I8 ? "I8" : "F8_E4M3", p.y_type == DType::F16 ? "F16" : "BF16",
                       w8_config_info(*out).ab == DType::I8 ? "I8" : "F8_E4M3",
                       w8_config_info(*out).f16_out ? "BF16 or F16" : "BF16"));
  return true;
}

void* workspace_from_scratch(void* scratch, size_t bytes) { return static_cast<Scratch*>(scratch)->get(bytes); }
#endif

}  // namespace

bool Provider::run_w8a8_cutlass(ScaledMM p, const xq_device_tensor& bias) {
  const W8Route route = route_from_env();
  if (route == W8Route::CublasLt) return false;
#ifdef XQUANT_CUDA_CUTLASS
  const bool fits = cc_major_ == 9 && cc_minor_ == 0 && cutlass_scaled_mm_fits(p);
  W8Config config{};
  const bool forced = forced_config(p, &config);
  const bool must = route == W8Route::Cutlass || forced;
  if (!must && (!fits || !cutlass_scaled_mm_auto(p, &config))) return false;
  if (!fits)
    throw Error(XQ_ERR_UNSUPPORTED,
                format("cuda: %s, but the CUTLASS W8A8 GEMM does not take "
                       "[M=%lld, N=%lld, K=%lld] here (needs sm_90, K and N multiples of 16, BF16/F16 output, "
                       "16-byte aligned operands)",
                       forced ? "XQUANT_CUDA_W8A8_CONFIG is set" : "XQUANT_CUDA_W8A8_GEMM=cutlass",
                       static_cast<long long>(p.M), static_cast<long long>(p.N), static_cast<long long>(p.K)));
  if (!forced && route == W8Route::Cutlass && !cutlass_scaled_mm_auto(p, &config)) {
    // Forced CUTLASS where auto keeps cuBLASLt: the configuration auto would
    // pick if CUTLASS were faster (the M bucket's data-parallel tile).
    config = p.ab == DType::I8 ? W8Config::I8_128x128_c2x1_coop
             : p.M <= 64       ? W8Config::F8_64x64_c1x8
             : p.M <= 128      ? W8Config::F8_64x128_c2x1_pp
                               : W8Config::F8_128x128_c2x1_coop;
  }
  p.bias = bias_as(bias, p.y_type, p.N);
  const cudaError_t e = cutlass_scaled_mm(p, config, W8Workspace{workspace_from_scratch, &s_ws_}, sm_count_, stream_);
  if (e == cudaSuccess) return true;
  if (e == cudaErrorNotSupported && !must) return false;
  throw Error(XQ_ERR_DEVICE, format("cuda: CUTLASS W8A8 GEMM (%s) [M=%lld, N=%lld, K=%lld] failed: %s",
                                    w8_config_info(config).name, static_cast<long long>(p.M),
                                    static_cast<long long>(p.N), static_cast<long long>(p.K),
                                    cudaGetErrorString(e)));
#else
  if (route == W8Route::Cutlass || forced_config_name())
    throw Error(XQ_ERR_UNSUPPORTED,
                "cuda: XQUANT_CUDA_W8A8_GEMM=cutlass or XQUANT_CUDA_W8A8_CONFIG is set, but this build has no "
                "CUTLASS GEMMs (scripts/fetch-cutlass.sh)");
  (void)p;
  (void)bias;
  return false;
#endif
}

}  // namespace xqcuda
