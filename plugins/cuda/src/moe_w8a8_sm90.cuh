// moe_w8a8_sm90.cuh: the grouped INT8 GEMM of the fused W8A8 MoE path
// (moe_w8a8.hpp) as a template over its tile configuration, and its
// launcher; instantiated in moe_w8a8_sm90.cu (cooperative 128x128x128, BF16
// and F16 output) and moe_w8a8_sm90_pingpong.cu (ping-pong 64x256x128, BF16),
// one translation unit each so nvcc compiles them in parallel. sm_90a only.
//
// CUTLASS 3.x: one ptr-array grouped GEMM over all experts (TMA loads, wgmma
// s8 x s8 -> s32, persistent CTAs walking every expert's tiles), the
// per-expert problem sizes, operand pointers and strides written on the
// device from the sorted offsets (so nothing comes back to the host), and an
// epilogue visitor tree
//   D = s_x[row] * (s_w[e][n] * acc)          (f32, cast to BF16 / F16)
// whose broadcasts read per-group pointers (Sm90ColBroadcast /
// Sm90RowBroadcast with a pointer element type select the group's vector).
// The pattern is vLLM's csrc/quantization/cutlass_w8a8/moe/grouped_mm_c3x.cuh
// (cutlass_3x_group_gemm, ScaledEpilogueArray) and get_group_starts.cuh, for
// INT8 instead of FP8; the dense version is cutlass_w8a8_sm90.cuh.
#pragma once

#include "moe_w8a8.hpp"

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_visitor_compute_tma_warpspecialized.hpp>
#include <cutlass/epilogue/fusion/sm90_visitor_load_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/group_array_problem_shape.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

namespace xqcuda {
namespace moe_w8_detail {

using namespace cute;
using ProblemShape = cutlass::gemm::GroupProblemShape<Shape<int, int, int>>;

// 128 x 128 tiles, 128 int8 of K per stage, two consumer warp groups
// (cooperative), a cluster of 2 along N sharing the activation tile by TMA
// multicast: vLLM's default grouped configuration shape for 8-bit inputs.
struct CoopConfig {
  using TileShape = Shape<_128, _128, _128>;
  using ClusterShape = Shape<_1, _2, _1>;
  using KernelSchedule = cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative;
  using EpilogueSchedule = cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative;
};
// 64 rows x 256 columns, K 128, ping-pong (one consumer warp group's
// epilogue overlaps the other's MMAs), cluster 1 x 2: vLLM's
// sm90_fp8_config_default of grouped_mm_c3x (csrc/quantization/cutlass_w8a8/
// moe/grouped_mm_c3x_sm90.cu), tried here for INT8 on small experts.
struct PingpongConfig {
  using TileShape = Shape<_64, _256, _128>;
  using ClusterShape = Shape<_1, _2, _1>;
  using KernelSchedule = cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong;
  using EpilogueSchedule = cutlass::epilogue::PtrArrayTmaWarpSpecializedPingpong;
};

template <class ElementD, class Config>
struct GroupedGemm {
  using TileShape = typename Config::TileShape;
  using ClusterShape = typename Config::ClusterShape;
  using ElementAB = int8_t;
  using ElementAcc = int32_t;
  using LayoutA = cutlass::layout::RowMajor;     // a [rows][K]
  using LayoutB = cutlass::layout::ColumnMajor;  // w [N][K] = B (K x N) column-major
  using LayoutD = cutlass::layout::RowMajor;     // d [rows][N]
  static constexpr int kAlignAB = 16;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  // s_x: one f32 per row of the group (column broadcast), s_w: one per
  // column n of the group's expert (row broadcast); `float*` element types
  // make both read ptr[group].
  using ScaleX = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float*, float, Stride<_1, _0, _0>>;
  using ScaleW = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float*, float, Stride<_0, _1, _0>>;
  using Accum = cutlass::epilogue::fusion::Sm90AccFetch;
  using MulW = cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, float, float,
                                                      cutlass::FloatRoundStyle::round_to_nearest>;
  using ScaledAcc = cutlass::epilogue::fusion::Sm90EVT<MulW, ScaleW, Accum>;
  using MulX = cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, ElementD, float,
                                                      cutlass::FloatRoundStyle::round_to_nearest>;
  using Fusion = cutlass::epilogue::fusion::Sm90EVT<MulX, ScaleX, ScaledAcc>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, float, void, LayoutD*, kAlignD, ElementD,
      LayoutD*, kAlignD, typename Config::EpilogueSchedule, Fusion>::CollectiveOp;
  using Stages = cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
      sizeof(typename CollectiveEpilogue::SharedStorage))>;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementAB, LayoutA*, kAlignAB, ElementAB, LayoutB*,
      kAlignAB, ElementAcc, TileShape, ClusterShape, Stages, typename Config::KernelSchedule>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, CollectiveMainloop, CollectiveEpilogue>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using StrideA = typename Kernel::InternalStrideA;
  using StrideB = typename Kernel::InternalStrideB;
  using StrideD = typename Kernel::InternalStrideD;
  using Shape3 = ProblemShape::UnderlyingProblemShape;
};

// The per-call group tables, carved from one device buffer (each 256-byte
// aligned): problem sizes, then the pointers and strides of every group.
struct Tables {
  char* base;
  int E;
  size_t at = 0;
  template <class T>
  T* take() {
    T* p = reinterpret_cast<T*>(base + at);
    at += (sizeof(T) * static_cast<size_t>(E) + 255) / 256 * 256;
    return p;
  }
};
constexpr size_t kTableEntryBytes = 12 + 3 * 8 + 3 * 16;  // shape, a/d/s_x pointers, 3 strides (<= 16 bytes each)

// One thread per expert: its rows [offsets[e], offsets[e+1]) of a, s_x and d.
template <class G>
__global__ void k_group_tables(int E, int N, int K, const int32_t* __restrict__ offsets, const int8_t* a,
                               const float* sa, typename G::Shape3* shapes, const int8_t** pa, const float** psa,
                               void** pd, typename G::StrideA* sta, typename G::StrideB* stb,
                               typename G::StrideD* std_, void* d, int d_bytes) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= E) return;
  const int64_t r0 = offsets[e];
  const int rows = static_cast<int>(offsets[e + 1] - r0);
  shapes[e] = typename G::Shape3(rows, N, K);
  pa[e] = a + r0 * K;
  psa[e] = sa + r0;
  pd[e] = static_cast<char*>(d) + r0 * N * d_bytes;
  sta[e] = cutlass::make_cute_packed_stride(typename G::StrideA{}, make_shape(rows, K, 1));
  stb[e] = cutlass::make_cute_packed_stride(typename G::StrideB{}, make_shape(N, K, 1));
  std_[e] = cutlass::make_cute_packed_stride(typename G::StrideD{}, make_shape(rows, N, 1));
}

template <class ElementD, class Config>
cudaError_t run(const MoeW8a8Gemm& p, void* tables, void* (*workspace)(void*, size_t), void* ctx, int sm_count,
                cudaStream_t stream) {
  using G = GroupedGemm<ElementD, Config>;
  static_assert(sizeof(typename G::StrideA) <= 16 && sizeof(typename G::StrideB) <= 16 &&
                    sizeof(typename G::StrideD) <= 16 && sizeof(typename G::Shape3) <= 12,
                "table entries outgrew kTableEntryBytes");
  const int E = p.E, N = static_cast<int>(p.N), K = static_cast<int>(p.K);
  Tables t{static_cast<char*>(tables), E};
  auto* shapes = t.take<typename G::Shape3>();
  auto* pa = t.take<const int8_t*>();
  auto* psa = t.take<const float*>();
  auto* pd = t.take<void*>();
  auto* sta = t.take<typename G::StrideA>();
  auto* stb = t.take<typename G::StrideB>();
  auto* std_ = t.take<typename G::StrideD>();
  k_group_tables<G><<<(E + 127) / 128, 128, 0, stream>>>(E, N, K, p.offsets, p.a, p.sa, shapes, pa, psa, pd, sta,
                                                         stb, std_, p.d, static_cast<int>(sizeof(ElementD)));
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;

  typename G::ScaleX::Arguments sx{reinterpret_cast<const float* const*>(psa), 0.f, {}};
  typename G::ScaleW::Arguments sw{reinterpret_cast<const float* const*>(p.sw_table), 0.f, {}};
  typename G::ScaledAcc::Arguments scaled_acc{sw, {}, {}};
  typename G::Fusion::Arguments fusion{sx, scaled_acc, {}};
  typename G::Kernel::MainloopArguments mainloop{pa, sta, reinterpret_cast<const int8_t**>(const_cast<const void**>(p.w_table)), stb};
  typename G::Kernel::EpilogueArguments epilogue{fusion, nullptr, std_, reinterpret_cast<ElementD**>(pd), std_};
  cutlass::KernelHardwareInfo hw;
  hw.device_id = 0;
  hw.sm_count = sm_count;
  typename G::Kernel::Arguments args{cutlass::gemm::GemmUniversalMode::kGrouped,
                                     {E, shapes, nullptr},
                                     mainloop,
                                     epilogue,
                                     hw};
  typename G::Device gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  const size_t ws_bytes = G::Device::get_workspace_size(args);
  void* ws = ws_bytes ? workspace(ctx, ws_bytes) : nullptr;
  if (ws_bytes && !ws) return cudaErrorMemoryAllocation;
  if (gemm.initialize(args, ws, stream) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
  if (gemm.run(stream) != cutlass::Status::kSuccess) {
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? cudaErrorLaunchFailure : e;
  }
  return cudaGetLastError();
}


}  // namespace moe_w8_detail

// The ping-pong instantiation (moe_w8a8_sm90_pingpong.cu), BF16 output.
cudaError_t moe_w8a8_grouped_gemm_pingpong(const MoeW8a8Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                           void* ctx, int sm_count, cudaStream_t stream);

}  // namespace xqcuda
