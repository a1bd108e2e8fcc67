// w4a8_hopper_tiles.hpp: the instantiated token tiles of the Hopper W4A8 GEMM
// (w4a8_hopper_gemm.cuh) behind plain functions, so the dispatch
// (w4a8_hopper.cu) needs no CUTLASS kernel types. `key` as PlanKey.
#pragma once

#include "w4a8_hopper.hpp"

namespace xqcuda {
namespace w4a8_detail {

struct PlanKey;

#define XQ_W4A8_TILE(name)                                                                      \
  size_t name##_workspace(const W4A8Layout& L, int64_t M, int sm_count);                        \
  cudaError_t name##_run(const W4A8Layout& L, const PlanKey& key, size_t ws_bytes, cudaStream_t stream);

// w4a8_hopper_tiles.cu: 128 x 64 x 128 and 128 x 128 x 128.
XQ_W4A8_TILE(t64)
XQ_W4A8_TILE(t128)
// w4a8_hopper_wide.cu: 128 x 256 x 128.
XQ_W4A8_TILE(t256)

#undef XQ_W4A8_TILE

}  // namespace w4a8_detail
}  // namespace xqcuda
