// cutlass_w8a8_sm90_i8.cu: the INT8 (s8 x s8 -> s32) scaled GEMMs, one
// tile configuration per M range. The configurations are vLLM's
// (csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_int8_dispatch.cuh):
// small M keeps the 64-row wgmma tile and spreads N over a cluster of 8
// that shares the activation tile by TMA multicast; mid M a ping-pong
// 64x128 tile; large M the cooperative 128x128 tile.
#include "cutlass_w8a8_sm90.cuh"

namespace xqcuda {
namespace {

using namespace cute;
using sm90::ScaledGemm;

template <class D>
struct SmallM {  // M <= 64
  using Gemm = ScaledGemm<int8_t, D, Shape<_64, _64, _256>, Shape<_1, _8, _1>, sm90::WarpSpecialized,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct MidM {  // 64 < M <= 128
  using Gemm = ScaledGemm<int8_t, D, Shape<_64, _128, _256>, Shape<_2, _1, _1>, sm90::Pingpong,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct LargeM {  // M > 128
  using Gemm = ScaledGemm<int8_t, D, Shape<_128, _128, _128>, Shape<_2, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative>;
};

}  // namespace

cudaError_t cutlass_scaled_mm_i8(const ScaledMM& p, void* workspace, size_t workspace_bytes, int sm_count,
                                 cudaStream_t stream) {
  if (p.M <= 64) return sm90::run_for_output<SmallM>(p, workspace, workspace_bytes, sm_count, stream);
  if (p.M <= 128) return sm90::run_for_output<MidM>(p, workspace, workspace_bytes, sm_count, stream);
  return sm90::run_for_output<LargeM>(p, workspace, workspace_bytes, sm_count, stream);
}

}  // namespace xqcuda
