// op_timing.hpp: per-op device times without synchronising
// (XQUANT_CUDA_OP_TIMES=1; off by default).
//
// The engine's op profile (XQUANT_OP_PROFILE=1) waits for every op, so each
// of its times holds a launch and a host round trip as well as the kernel.
// Here the provider records a CUDA event on its stream before and after each
// run_op and reads the pairs back when the host waits anyway (download,
// synchronize), so the step runs as it would, with two event records per op
// added on the stream. An op's time is its start event to its end event:
// its kernels plus whatever device idle time falls between them (none when
// the host is ahead of the device). Recorded graphs are not timed. At exit
// the provider prints one stderr line per label, "op-times: LABEL calls N
// total_us T", which scripts/gpu-decode-profile.sh turns into a per-step table.
#pragma once

#include <xquant/xq_kernel.h>

#include <map>
#include <string>
#include <vector>

#include "kernels.hpp"

namespace xqcuda {

class OpTimer {
 public:
  OpTimer();
  ~OpTimer();
  bool on() const { return on_; }
  void before(cudaStream_t s);
  void after(const xq_op& op, cudaStream_t s);
  // Reads back the pairs whose work has finished (call after a host wait).
  void collect();

 private:
  struct Pending {
    cudaEvent_t start, end;
    std::string label;
  };
  struct Total {
    uint64_t calls = 0;
    double us = 0;
  };
  cudaEvent_t take();
  bool on_ = false;
  cudaEvent_t open_ = nullptr;
  std::vector<cudaEvent_t> free_;
  std::vector<Pending> pending_;
  std::map<std::string, Total> totals_;
};

}  // namespace xqcuda
