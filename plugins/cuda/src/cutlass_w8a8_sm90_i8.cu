// cutlass_w8a8_sm90_i8.cu: the INT8 (s8 x s8 -> s32) scaled GEMMs, one
// instantiation per configuration of cutlass_w8a8.hpp (which one runs is
// cutlass_w8a8_configs.cpp's choice). The first three are vLLM's
// (csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_int8_dispatch.cuh):
// small M keeps the 64-row wgmma tile and spreads N over a cluster of 8
// that shares the activation tile by TMA multicast; mid M a ping-pong 64x128
// tile; large M the cooperative 128x128 tile. The others, BF16 output only:
// stream-K over the 128x128 cooperative tile (few output tiles for 132 SMs:
// N = 4096 at small M, 4096x4096 at M = 1024), wider 128x256 and 256x128
// cooperative tiles (more MMA per byte of shared memory at large M), and
// vLLM's large-M ping-pong 128x128.
#include "cutlass_w8a8_sm90.cuh"

namespace xqcuda {
namespace {

using namespace cute;
using sm90::ScaledGemm;

template <class D>
struct C64x64c1x8 {
  using Gemm = ScaledGemm<int8_t, D, Shape<_64, _64, _256>, Shape<_1, _8, _1>, sm90::WarpSpecialized,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct C64x128c2x1pp {
  using Gemm = ScaledGemm<int8_t, D, Shape<_64, _128, _256>, Shape<_2, _1, _1>, sm90::Pingpong,
                          sm90::EpiWarpSpecialized>;
};
template <class D>
struct C128x128c2x1coop {
  using Gemm = ScaledGemm<int8_t, D, Shape<_128, _128, _128>, Shape<_2, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative>;
};
template <class D>
struct C128x128c1x1sk {
  using Gemm = ScaledGemm<int8_t, D, Shape<_128, _128, _128>, Shape<_1, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative, sm90::StreamK>;
};
template <class D>
struct C128x256c2x1coop {
  using Gemm = ScaledGemm<int8_t, D, Shape<_128, _256, _128>, Shape<_2, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative>;
};
template <class D>
struct C256x128c2x1coop {
  using Gemm = ScaledGemm<int8_t, D, Shape<_256, _128, _128>, Shape<_2, _1, _1>, sm90::Cooperative,
                          sm90::EpiCooperative>;
};
template <class D>
struct C128x128c2x1pp {
  using Gemm = ScaledGemm<int8_t, D, Shape<_128, _128, _128>, Shape<_2, _1, _1>, sm90::Pingpong,
                          sm90::EpiWarpSpecialized>;
};

}  // namespace

cudaError_t cutlass_scaled_mm_i8(const ScaledMM& p, W8Config c, const W8Workspace& ws, int sm_count,
                                 cudaStream_t stream) {
  switch (c) {
    case W8Config::I8_64x64_c1x8: return sm90::run_for_output<C64x64c1x8>(p, ws, sm_count, stream);
    case W8Config::I8_64x128_c2x1_pp: return sm90::run_for_output<C64x128c2x1pp>(p, ws, sm_count, stream);
    case W8Config::I8_128x128_c2x1_coop: return sm90::run_for_output<C128x128c2x1coop>(p, ws, sm_count, stream);
    case W8Config::I8_128x128_c1x1_sk: return sm90::run_bf16_only<C128x128c1x1sk>(p, ws, sm_count, stream);
    case W8Config::I8_128x256_c2x1_coop: return sm90::run_bf16_only<C128x256c2x1coop>(p, ws, sm_count, stream);
    case W8Config::I8_256x128_c2x1_coop: return sm90::run_bf16_only<C256x128c2x1coop>(p, ws, sm_count, stream);
    case W8Config::I8_128x128_c2x1_pp: return sm90::run_bf16_only<C128x128c2x1pp>(p, ws, sm_count, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace xqcuda
