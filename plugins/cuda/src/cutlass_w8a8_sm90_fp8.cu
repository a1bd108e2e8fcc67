// cutlass_w8a8_sm90_fp8.cu: the FP8 E4M3 (e4m3 x e4m3 -> f32) scaled GEMMs,
// one tile configuration per M range, after vLLM's
// csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_fp8_dispatch.cuh. The
// mainloops accumulate with CUTLASS's periodic promotion to f32 (not the
// FP8FastAccum schedules), the accuracy cuBLASLt and torch._scaled_mm give
// by default.
#include "cutlass_w8a8_sm90.cuh"

namespace xqcuda {
namespace {

using namespace cute;
using sm90::ScaledGemm;
using E4M3 = cutlass::float_e4m3_t;

template <class D>
struct SmallM {  // M <= 64
  using Gemm = ScaledGemm<E4M3, D, Shape<_64, _64, _128>, Shape<_1, _8, _1>, sm90::WarpSpecialized,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct MidM {  // 64 < M <= 128
  using Gemm = ScaledGemm<E4M3, D, Shape<_64, _128, _128>, Shape<_2, _1, _1>, sm90::Pingpong,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct LargeM {  // M > 128
  using Gemm = ScaledGemm<E4M3, D, Shape<_128, _128, _128>, Shape<_2, _1, _1>, sm90::Pingpong,
                          sm90::EpiWarpSpecialized>;
};

}  // namespace

cudaError_t cutlass_scaled_mm_fp8(const ScaledMM& p, void* workspace, size_t workspace_bytes, int sm_count,
                                  cudaStream_t stream) {
  if (p.M <= 64) return sm90::run_for_output<SmallM>(p, workspace, workspace_bytes, sm_count, stream);
  if (p.M <= 128) return sm90::run_for_output<MidM>(p, workspace, workspace_bytes, sm_count, stream);
  return sm90::run_for_output<LargeM>(p, workspace, workspace_bytes, sm_count, stream);
}

}  // namespace xqcuda
