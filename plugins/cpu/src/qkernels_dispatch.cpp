// qkernels_dispatch.cpp: which kernel table runs, decided from the CPU's
// feature flags at run time (never from compile flags), overridable by
// XQUANT_CPU_ISA for tests and benchmarks, and which activation path
// weight-only decode takes (XQUANT_CPU_GEMV).
#include "qkernels.hpp"

#include <xquant/sdk/host.hpp>

#include <cstdlib>
#include <string>

namespace xquant::cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

bool cpu_has(Isa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2:  // F16C: the block kernels convert their f16 scales with vcvtph2ps
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::avx512:
      return cpu_has(Isa::avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

const QKernels& kernels_of(Isa isa) {
  switch (isa) {
    case Isa::avx2: return kAvx2Kernels;
    case Isa::avx512: return kAvx512Kernels;
    case Isa::scalar: break;
  }
  return kScalarKernels;
}

Isa selected_isa() {
  const char* env = std::getenv("XQUANT_CPU_ISA");
  if (!env || !*env) return cpu_has(Isa::avx512) ? Isa::avx512 : cpu_has(Isa::avx2) ? Isa::avx2 : Isa::scalar;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (std::string(env) == isa_name(isa)) {
      if (!cpu_has(isa))
        throw sdk::Error(XQ_ERR_UNSUPPORTED, std::string("cpu provider: XQUANT_CPU_ISA=") + env + ": this CPU lacks " + env);
      return isa;
    }
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                   std::string("cpu provider: XQUANT_CPU_ISA=") + env + " is not one of scalar, avx2, avx512");
}

GemvMode selected_gemv_mode() {
  const char* env = std::getenv("XQUANT_CPU_GEMV");
  if (!env || !*env || std::string(env) == "auto") return GemvMode::automatic;
  if (std::string(env) == "f32") return GemvMode::f32;
  if (std::string(env) == "q8") return GemvMode::q8;
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, std::string("cpu provider: XQUANT_CPU_GEMV=") + env + " is not auto, f32 or q8");
}

int64_t selected_gemv_max_rows() {
  const char* env = std::getenv("XQUANT_CPU_GEMV_ROWS");
  if (!env || !*env) return 4;
  char* end = nullptr;
  long long v = std::strtoll(env, &end, 10);
  if (*end || v <= 0)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                     std::string("cpu provider: XQUANT_CPU_GEMV_ROWS=") + env + " is not a positive integer");
  return static_cast<int64_t>(v);
}

PrefillMode selected_prefill_mode() {
  const char* env = std::getenv("XQUANT_CPU_PREFILL");
  if (!env || !*env || std::string(env) == "auto") return PrefillMode::automatic;
  if (std::string(env) == "sgemm") return PrefillMode::sgemm;
  if (std::string(env) == "int8") return PrefillMode::int8;
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                   std::string("cpu provider: XQUANT_CPU_PREFILL=") + env + " is not auto, sgemm or int8");
}

W8A8PrefillMode selected_w8a8_prefill_mode() {
  const char* env = std::getenv("XQUANT_CPU_W8A8_PREFILL");
  if (!env || !*env || std::string(env) == "auto") return W8A8PrefillMode::automatic;
  if (std::string(env) == "integer") return W8A8PrefillMode::integer;
  if (std::string(env) == "sgemm") return W8A8PrefillMode::sgemm;
  throw sdk::Error(XQ_ERR_INVALID_ARGUMENT,
                   std::string("cpu provider: XQUANT_CPU_W8A8_PREFILL=") + env + " is not auto, integer or sgemm");
}

}  // namespace xquant::cpu
