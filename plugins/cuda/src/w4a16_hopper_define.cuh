// w4a16_hopper_define.cuh: defines one schedule's functions declared in
// w4a16_hopper_schedules.hpp from a HopperW4 configuration
// (w4a16_hopper_gemm.cuh).
#pragma once

#include "w4a16_hopper_gemm.cuh"
#include "w4a16_hopper_schedules.hpp"

#define XQ_W4H_DEFINE(name, Config)                                                                                \
  size_t name##_workspace(const W4HopperLayout& L, int64_t M, int sm_count) {                                   \
    return Config::workspace(L, M, sm_count);                                                                    \
  }                                                                                                              \
  cudaError_t name##_run(const W4HopperLayout& L, const void* qw, const void* s, const void* z, const void* x,   \
                         int64_t M, void* y, void* ws, size_t ws_bytes, int sm_count, cudaStream_t stream,      \
                         bool cached) {                                                                          \
    return cached ? Config::run(L, qw, s, z, x, M, y, ws, ws_bytes, sm_count, stream)                            \
                  : Config::run_uncached(L, qw, s, z, x, M, y, ws, ws_bytes, sm_count, stream);                  \
  }
