// event_timer.hpp: device time per launch from CUDA events on the default
// stream, for the attention tests' DISABLED_Speed* benchmarks and the
// prefill-attention timing (never run in CI; they print, they assert nothing
// about time).
#pragma once

#include <cuda_runtime.h>

namespace xqtest {

class EventTimer {
 public:
  EventTimer() {
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Microseconds per call of `launch` over `reps` calls, after `warmup`.
  template <class Launch>
  double us_per_call(const Launch& launch, int warmup, int reps) {
    for (int i = 0; i < warmup; ++i) launch();
    cudaEventRecord(start_);
    for (int i = 0; i < reps; ++i) launch();
    cudaEventRecord(stop_);
    cudaEventSynchronize(stop_);
    float ms = 0;
    cudaEventElapsedTime(&ms, start_, stop_);
    return ms * 1e3 / reps;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace xqtest
