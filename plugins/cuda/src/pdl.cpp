// pdl.cpp: whether kernels launch with Programmatic Dependent Launch
// (pdl.cuh's launch_pdl). XQUANT_CUDA_PDL=0 turns it off (read once);
// devices below compute capability 9.0 have no PDL and launch plainly.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace xqcuda {

namespace {

std::atomic<int> g_override{-1};

bool device_has_pdl() {
  static const bool has = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return has;
}

bool from_env_and_device() {
  static const bool on = [] {
    const char* e = std::getenv("XQUANT_CUDA_PDL");
    return !(e && std::strcmp(e, "0") == 0) && device_has_pdl();
  }();
  return on;
}

}  // namespace

bool pdl_enabled() {
  const int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0) return o == 1 && device_has_pdl();
  return from_env_and_device();
}

void pdl_override(int on) { g_override.store(on < 0 ? -1 : on ? 1 : 0, std::memory_order_relaxed); }

}  // namespace xqcuda
