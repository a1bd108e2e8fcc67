// w4a16_hopper_schedules.hpp: the instantiated schedules of the Hopper W4A16
// GEMM (w4a16_hopper_gemm.cuh), one translation unit each, behind plain
// functions so the dispatch (w4a16_hopper.cu) needs no CUTLASS types.
// Arguments as w4h_gemm (w4a16_hopper.hpp); `cached` = false takes CUTLASS's
// per-call initialize instead of the cached parameters.
#pragma once

#include "w4a16_hopper.hpp"

namespace xqcuda {
namespace w4h_detail {

#define XQ_W4H_SCHEDULE(name)                                                                                     \
  size_t name##_workspace(const W4HopperLayout& L, int64_t M, int sm_count);                                     \
  cudaError_t name##_run(const W4HopperLayout& L, const void* qw, const void* s, const void* z, const void* x,    \
                         int64_t M, void* y, void* ws, size_t ws_bytes, int sm_count, cudaStream_t stream,       \
                         bool cached);

// w4a16_hopper_coop.cu: cooperative, stream-K, 128 x 64 x 64 and 128 x 128 x 64 (the first schedule).
XQ_W4H_SCHEDULE(coop64)
XQ_W4H_SCHEDULE(coop128)
// w4a16_hopper_pingpong.cu: ping-pong, persistent, 128 x 64 x 128 and 128 x 128 x 64.
XQ_W4H_SCHEDULE(pingpong64)
XQ_W4H_SCHEDULE(pingpong128)
// w4a16_hopper_wide.cu: cooperative, stream-K, 128 x 256 x 64.
XQ_W4H_SCHEDULE(wide256)
// w4a16_hopper_narrow.cu: cooperative, stream-K, 128 x 16 and 128 x 32, K 64 and K 128.
XQ_W4H_SCHEDULE(narrow16)
XQ_W4H_SCHEDULE(narrow32)
XQ_W4H_SCHEDULE(k128x16)
XQ_W4H_SCHEDULE(k128x32)

#undef XQ_W4H_SCHEDULE

}  // namespace w4h_detail
}  // namespace xqcuda
