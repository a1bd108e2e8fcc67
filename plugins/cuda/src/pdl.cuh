// pdl.cuh: Programmatic Dependent Launch for the decode chain's kernels:
// device helpers (griddepcontrol) and the host launch helper. Kept out of
// common.cuh so that the ~20 kernel files that include it but launch
// nothing with PDL are not recompiled for it.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace xqcuda {

// ---- Programmatic Dependent Launch (PDL) ---------------------------------------
// CUDA C++ Programming Guide, "Programmatic Dependent Launch and
// Synchronization" (compute capability 9.0+): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization (launch_pdl below) may
// start while the kernel before it in the stream is still running, as soon as
// every CTA of that kernel has executed griddepcontrol.launch_dependents (or
// exited). The decode step is a chain of ~60 small kernels per token; PDL
// hides each launch's latency and lets a GEMV start streaming its (constant)
// weights while its predecessor finishes.
//
// The rule for every kernel launched with launch_pdl: pdl_wait() before its
// first read of anything an earlier kernel wrote and before its first write
// of anything an earlier kernel may still read. griddepcontrol.wait returns
// once the previous grid has completed and its memory is visible; that grid
// itself waited for its own predecessor, so the wait covers the whole chain.
// Before the wait a kernel may read only data no kernel of the chain writes
// (weights uploaded at load, host uploads made before the step). A kernel
// launched without the attribute keeps full stream ordering, and in one not
// launched with it griddepcontrol.wait returns at once, so both helpers are
// safe in kernels that are also launched the plain way. Both compile to
// nothing below sm_90 (the plugin also builds for sm_80).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel in the stream (if launched with PDL) be scheduled once
// every CTA of this grid has called it; its own pdl_wait still waits for this
// grid to complete, so calling it early is always safe.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launch_pdl sets the attribute: device 0 has compute capability 9.0
// or newer and XQUANT_CUDA_PDL is not "0" (read once, at the first launch,
// so one binary measures both ways: XQUANT_CUDA_PDL=0 gives plain launches).
bool pdl_enabled();
// Tests: 1 forces PDL launches on (where the device has them), 0 off, -1
// back to XQUANT_CUDA_PDL. Not for concurrent use with launches.
void pdl_override(int on);

// Launches kernel<<<grid, block, smem, stream>>>(args...) through
// cudaLaunchKernelEx, with programmatic stream serialization where
// pdl_enabled(). Captured into a graph (CUDA 12.3+), the attribute becomes a
// programmatic dependency edge between the two kernel nodes.
template <typename... Params, typename... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  const cudaError_t last = cudaGetLastError();  // clears the launch error as the <<<>>> callers' checks do
  return e != cudaSuccess ? e : last;
}

}  // namespace xqcuda
