// flashinfer_plan_buffers.hpp: the plan arrays' buffers that FlashInfer's
// decode and prefill each keep (flashinfer_decode.cu, flashinfer_prefill.cu):
// a device copy, the page-locked host copy each plan is written into, and
// the event of the last copy from one to the other. Allocated once, at the
// first plan: a recorded graph keeps the device address.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace xqcuda {

class PlanBuffers {
 public:
  PlanBuffers() = default;
  PlanBuffers(const PlanBuffers&) = delete;
  PlanBuffers& operator=(const PlanBuffers&) = delete;
  ~PlanBuffers() {
    if (copied_) cudaEventSynchronize(copied_), cudaEventDestroy(copied_);
    cudaFreeHost(pinned_);
    cudaFree(device_);
  }

  // Readies the host copy for a new plan: the first call allocates `bytes`
  // of each, all three or none (a failed allocation leaves nothing behind);
  // later calls wait for the previous plan's copy out of it.
  cudaError_t prepare(size_t bytes) {
    if (copied_) return cudaEventSynchronize(copied_);
    char* device = nullptr;
    char* pinned = nullptr;
    cudaEvent_t copied = nullptr;
    cudaError_t e = cudaMalloc(&device, bytes);
    if (e == cudaSuccess) e = cudaMallocHost(&pinned, bytes);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&copied, cudaEventDisableTiming);
    if (e != cudaSuccess) {
      cudaFree(device);
      cudaFreeHost(pinned);
      cudaGetLastError();
      return e;
    }
    device_ = device, pinned_ = pinned, copied_ = copied;
    return cudaSuccess;
  }
  // Marks the plan's copies on `stream` (those enqueued so far) as the last.
  cudaError_t copied(cudaStream_t stream) { return cudaEventRecord(copied_, stream); }

  char* device() const { return device_; }
  char* pinned() const { return pinned_; }

 private:
  char* device_ = nullptr;
  char* pinned_ = nullptr;
  cudaEvent_t copied_ = nullptr;
};

}  // namespace xqcuda
