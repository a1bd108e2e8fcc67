// cutlass_w8a8_sm90.cuh: the CUTLASS 3.x sm_90a scaled GEMM template behind
// cutlass_w8a8.hpp: TMA loads, wgmma, a warp-specialized persistent kernel,
// and an epilogue visitor tree
//   D = s_x[m] * (s_w[n] * acc) + bias[n]     (computed in f32, cast to D)
// with s_x a column broadcast (one value per output row m), s_w and bias row
// broadcasts (one per column n); a null pointer broadcasts the scalar
// null_default instead (the per-tensor case; a null bias adds 0).
// The pattern is vLLM's csrc/quantization/cutlass_w8a8/c3x
// (scaled_mm_epilogues_c3x.hpp ScaledEpilogueBias, scaled_mm.cuh
// cutlass_3x_gemm) on CUTLASS's own Sm90ColBroadcast / Sm90RowBroadcast.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_visitor_compute_tma_warpspecialized.hpp>
#include <cutlass/epilogue/fusion/sm90_visitor_load_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

#include <type_traits>

#include "cutlass_w8a8.hpp"

namespace xqcuda::sm90 {

using namespace cute;

// One kernel: input type, output type, CTA tile, cluster, mainloop and
// epilogue schedules, tile scheduler (persistent data-parallel, or stream-K:
// cutlass/gemm/kernel/sm90_tile_scheduler_stream_k.hpp, cooperative kernels
// only).
template <class ElementAB, class ElementD, class TileShape, class ClusterShape, class KernelSchedule,
          class EpilogueSchedule, class Scheduler = cutlass::gemm::PersistentScheduler>
struct ScaledGemm {
  using ElementAcc = std::conditional_t<std::is_same_v<ElementAB, int8_t>, int32_t, float>;
  using ElementC = void;  // no C operand: bias comes in through the visitor tree
  using LayoutA = cutlass::layout::RowMajor;     // x [M][K]
  using LayoutB = cutlass::layout::ColumnMajor;  // w [N][K] = B (K x N) column-major
  using LayoutD = cutlass::layout::RowMajor;     // y [M][N]
  static constexpr int kAlignAB = 128 / cutlass::sizeof_bits<ElementAB>::value;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  // s_x: one f32 per row m; s_w, bias: one per column n.
  using ScaleX = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float, float, Stride<_1, _0, _0>>;
  using ScaleW = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float, Stride<_0, _1, _0>>;
  using Bias = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, ElementD, float, Stride<_0, _1, _0>>;
  using Accum = cutlass::epilogue::fusion::Sm90AccFetch;
  using MulW = cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, float, float,
                                                      cutlass::FloatRoundStyle::round_to_nearest>;
  using ScaledAcc = cutlass::epilogue::fusion::Sm90EVT<MulW, ScaleW, Accum>;
  using MulXAddBias = cutlass::epilogue::fusion::Sm90Compute<cutlass::homogeneous_multiply_add, ElementD, float,
                                                             cutlass::FloatRoundStyle::round_to_nearest>;
  using Fusion = cutlass::epilogue::fusion::Sm90EVT<MulXAddBias, ScaleX, ScaledAcc, Bias>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, float, ElementC, LayoutD, kAlignD, ElementD,
      LayoutD, kAlignD, EpilogueSchedule, Fusion>::CollectiveOp;

  // Mainloop stages: what shared memory the epilogue leaves.
  using Stages = cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
      sizeof(typename CollectiveEpilogue::SharedStorage))>;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, LayoutA, kAlignAB, ElementAB, LayoutB,
      kAlignAB, ElementAcc, TileShape, ClusterShape, Stages, KernelSchedule>::CollectiveOp;

  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, CollectiveMainloop,
                                                      CollectiveEpilogue, Scheduler>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static cudaError_t run(const ScaledMM& p, const W8Workspace& ws, int sm_count, cudaStream_t stream) {
    const int M = static_cast<int>(p.M), N = static_cast<int>(p.N), K = static_cast<int>(p.K);
    auto stride_a = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, make_shape(M, K, 1));
    auto stride_b = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, make_shape(N, K, 1));
    auto stride_d = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, make_shape(M, N, 1));

    typename ScaleX::Arguments sx{p.sx, p.sx_const, {}};
    typename ScaleW::Arguments sw{p.sw, p.sw_const, {}};
    typename Bias::Arguments bias{static_cast<const ElementD*>(p.bias), ElementD(0.f), {}};
    typename ScaledAcc::Arguments scaled_acc{sw, {}, {}};
    typename Fusion::Arguments fusion{sx, scaled_acc, bias, {}};

    typename Kernel::MainloopArguments mainloop{static_cast<const ElementAB*>(p.x), stride_a,
                                                static_cast<const ElementAB*>(p.w), stride_b};
    typename Kernel::EpilogueArguments epilogue{fusion, nullptr, stride_d, static_cast<ElementD*>(p.y), stride_d};
    typename Kernel::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm, {M, N, K, 1}, mainloop, epilogue};
    args.hw_info.device_id = 0;
    args.hw_info.sm_count = sm_count;
    if constexpr (std::is_same_v<Scheduler, cutlass::gemm::StreamKScheduler> && std::is_same_v<ElementAcc, int32_t>) {
      // INT32 partial sums add exactly in any order, so the reduction need
      // not wait for its turn (the deterministic mode serialises it); f32
      // (FP8) partials keep the fixed order, so repeated calls match.
      args.scheduler.reduction_mode =
          cutlass::gemm::kernel::detail::ReductionMode::Nondeterministic;
    }

    Device gemm;
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
    const size_t need = Device::get_workspace_size(args);
    void* workspace = need ? ws.get(ws.ctx, need) : nullptr;
    if (need && !workspace) return cudaErrorMemoryAllocation;
    if (gemm.initialize(args, workspace, stream) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
    if (gemm.run(stream) != cutlass::Status::kSuccess) {
      const cudaError_t e = cudaGetLastError();
      return e == cudaSuccess ? cudaErrorLaunchFailure : e;
    }
    return cudaGetLastError();
  }
};

// Schedules (cutlass/gemm/dispatch_policy.hpp, cutlass/epilogue/dispatch_policy.hpp).
using WarpSpecialized = cutlass::gemm::KernelTmaWarpSpecialized;
using Pingpong = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using Cooperative = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using PingpongFastAccum = cutlass::gemm::KernelTmaWarpSpecializedPingpongFP8FastAccum;
using StreamK = cutlass::gemm::StreamKScheduler;
using EpiWarpSpecialized = cutlass::epilogue::TmaWarpSpecialized;
using EpiCooperative = cutlass::epilogue::TmaWarpSpecializedCooperative;

// Picks the output type at run time (BF16 and F16 instantiated).
template <template <class> class Config>
cudaError_t run_for_output(const ScaledMM& p, const W8Workspace& ws, int sm_count, cudaStream_t stream) {
  if (p.y_type == DType::BF16) return Config<cutlass::bfloat16_t>::Gemm::run(p, ws, sm_count, stream);
  if (p.y_type == DType::F16) return Config<cutlass::half_t>::Gemm::run(p, ws, sm_count, stream);
  return cudaErrorNotSupported;
}

// A configuration instantiated for BF16 output only (the tuned ones: each
// instantiation is 1-2 minutes of nvcc; F16 output keeps the basic set).
template <template <class> class Config>
cudaError_t run_bf16_only(const ScaledMM& p, const W8Workspace& ws, int sm_count, cudaStream_t stream) {
  if (p.y_type == DType::BF16) return Config<cutlass::bfloat16_t>::Gemm::run(p, ws, sm_count, stream);
  return cudaErrorNotSupported;
}

}  // namespace xqcuda::sm90
