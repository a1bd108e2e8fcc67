// cutlass_w8a8_sm90_fp8.cu: the FP8 E4M3 (e4m3 x e4m3 -> f32) scaled GEMMs,
// one instantiation per configuration of cutlass_w8a8.hpp (which one runs is
// cutlass_w8a8_configs.cpp's choice), after vLLM's
// csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_fp8_dispatch.cuh.
//
// All but one accumulate with CUTLASS's periodic promotion to f32 (the
// accuracy of cuBLASLt and of torch._scaled_mm's default). That promotion
// keeps a second f32 accumulator set beside the wgmma one, so the 128x128
// tile is cooperative (64 rows per consumer warp group: 2 x 64 accumulators
// per thread); the ping-pong 128x128 tile (128 rows per warp group) needed
// 2 x 128 and spilled (936 bytes of stores per thread, ptxas -v) and ran
// 3-6x behind cuBLASLt. F8_128x128_c2x1_pp_fast is vLLM's default large-M
// kernel (FP8FastAccum: no promotion, torch's use_fast_accum=True), BF16
// output only and never picked by auto.
#include "cutlass_w8a8_sm90.cuh"

namespace xqcuda {
namespace {

using namespace cute;
using sm90::ScaledGemm;
using E4M3 = cutlass::float_e4m3_t;

template <class D>
struct C64x64c1x8 {
  using Gemm = ScaledGemm<E4M3, D, Shape<_64, _64, _128>, Shape<_1, _8, _1>, sm90::WarpSpecialized,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct C64x128c2x1pp {
  using Gemm = ScaledGemm<E4M3, D, Shape<_64, _128, _128>, Shape<_2, _1, _1>, sm90::Pingpong,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct C128x128c2x1coop {
  using Gemm = ScaledGemm<E4M3, D, Shape<_128, _128, _128>, Shape<_2, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative>;
};
template <class D>
struct C128x128c1x1sk {
  using Gemm = ScaledGemm<E4M3, D, Shape<_128, _128, _128>, Shape<_1, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative, sm90::StreamK>;
};
template <class D>
struct C128x128c2x1ppFast {
  using Gemm = ScaledGemm<E4M3, D, Shape<_128, _128, _128>, Shape<_2, _1, _1>, sm90::PingpongFastAccum,
                          sm90::EpiWarpSpecialized>;
};

}  // namespace

cudaError_t cutlass_scaled_mm_fp8(const ScaledMM& p, W8Config c, const W8Workspace& ws, int sm_count,
                                  cudaStream_t stream) {
  switch (c) {
    case W8Config::F8_64x64_c1x8: return sm90::run_for_output<C64x64c1x8>(p, ws, sm_count, stream);
    case W8Config::F8_64x128_c2x1_pp: return sm90::run_for_output<C64x128c2x1pp>(p, ws, sm_count, stream);
    case W8Config::F8_128x128_c2x1_coop: return sm90::run_for_output<C128x128c2x1coop>(p, ws, sm_count, stream);
    case W8Config::F8_128x128_c1x1_sk: return sm90::run_bf16_only<C128x128c1x1sk>(p, ws, sm_count, stream);
    case W8Config::F8_128x128_c2x1_pp_fast:
      return sm90::run_bf16_only<C128x128c2x1ppFast>(p, ws, sm_count, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace xqcuda
