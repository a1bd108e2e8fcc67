// moe_w4a16_sm90.cuh: the grouped W4A16 MoE GEMM (moe_w4a16_grouped.hpp) as
// a template over the token tile, and its launcher; instantiated once per
// tile in moe_w4a16_sm90_t64.cu / moe_w4a16_sm90_t128.cu (one translation
// unit each, so nvcc compiles them in parallel). sm_90a only.
//
// Computed swapped like the dense Hopper W4A16 GEMM (w4a16_hopper_gemm.cuh):
// per expert y^T[N][rows] = W[N][K] * xs^T, so the int4 operand is wgmma's A,
// the one taken from registers, and y^T column-major is y[rows][N] row-major.
// Per group (expert): problem (N, rows, K); A = its packed codes with the
// same reordered layout as the dense kernel (WeightLayout), scales and
// offsets [G][N] (the collective computes w = s*q + z); B = its sorted rows.
// Experts with no token have rows = 0 and get no tile.
#pragma once

#include "moe_w4a16_grouped.hpp"
#include "w4a16_hopper_gemm.cuh"  // WeightLayout, weight_layout (the cuda-w4a16-wgmma code order)

#include <cutlass/gemm/group_array_problem_shape.hpp>

namespace xqcuda {
namespace moe_w4_detail {

using namespace cute;
using w4h_detail::Act;
using w4h_detail::Quant;
using w4h_detail::WeightLayout;

// CUTLASS 4.2.0's ptr-array mixed-input mainloop
// (cutlass/gemm/collective/sm90_mma_array_tma_gmma_rs_warpspecialized_mixed_input.hpp),
// in its scale + zero mode (ConvertAndScaleWithZero), handles only the
// zero's TMA descriptor in tensormaps_init, tensormaps_replace_global_address,
// tensormaps_replace_global_tensor_properties, tensormaps_cp_fence_release and
// tensormaps_fence_acquire (each is an `if ConvertAndScale ... else if
// ConvertAndScaleWithZero` naming one of the two), so its scale loads go
// through a descriptor nothing wrote: "an illegal instruction was
// encountered" on the H200. This is that collective with those five steps
// doing both; the grouped kernel (sm90_gemm_array_tma_warpspecialized_cooperative.hpp)
// calls them by name on its CollectiveMainloop type, so these hide the base's.
template <class Base>
struct ScaleAndZeroMainloop : Base {
  static_assert(Base::KernelConversionMode == Base::ConversionMode::ConvertAndScaleWithZero,
                "only the scale + zero mode has the missing scale descriptor");
  using Params = typename Base::Params;
  using TensorMapStorage = typename Base::TensorMapStorage;

  CUTLASS_DEVICE static void copy_descriptor(cute::TmaDescriptor const* from, cute::TmaDescriptor* smem) {
    Tensor src = make_tensor(from, Int<1>{}, Int<1>{});
    Tensor dst = make_tensor(make_smem_ptr(smem), Int<1>{}, Int<1>{});
    copy(recast<uint128_t>(src), recast<uint128_t>(dst));
  }

  // The four descriptors of this SM in the workspace (A, B, scale, zero),
  // seeded from the kernel parameters into shared memory.
  CUTLASS_DEVICE auto tensormaps_init(Params const& p, TensorMapStorage& smem, int32_t sm_count, int32_t sm_idx) {
    auto* gmem = reinterpret_cast<cute::TmaDescriptor*>(p.tensormaps);
    if (cute::elect_one_sync()) {
      copy_descriptor(p.tma_load_a.get_tma_descriptor(), &smem.smem_tensormap_A);
      copy_descriptor(p.tma_load_b.get_tma_descriptor(), &smem.smem_tensormap_B);
      copy_descriptor(p.tma_load_scale.get_tma_descriptor(), &smem.smem_tensormap_scale);
      copy_descriptor(p.tma_load_zero.get_tma_descriptor(), &smem.smem_tensormap_zero);
    }
    __syncwarp();
    return cute::make_tuple(&gmem[sm_idx], &gmem[sm_idx + sm_count], &gmem[sm_idx + 2 * sm_count],
                            &gmem[sm_idx + 3 * sm_count]);
  }

  CUTLASS_DEVICE void replace_addresses(TensorMapStorage& smem, Params const& p, int32_t g) {
    cute::tma_descriptor_replace_addr_in_shared_mem(smem.smem_tensormap_A, p.ptr_A[g]);
    cute::tma_descriptor_replace_addr_in_shared_mem(smem.smem_tensormap_B, p.ptr_B[g]);
    cute::tma_descriptor_replace_addr_in_shared_mem(smem.smem_tensormap_scale, p.ptr_S[g]);
    cute::tma_descriptor_replace_addr_in_shared_mem(smem.smem_tensormap_zero, p.ptr_Z[g]);
  }

  // Group g's dims and strides, as the base does, for all four tensors.
  template <class ProblemShape_MNKL>
  CUTLASS_DEVICE void replace_properties(TensorMapStorage& smem, Params const& p, int32_t g,
                                         ProblemShape_MNKL problem_shape_mnkl) {
    static_assert(!Base::SwapAB, "the int4 operand is A here");
    const uint32_t M = get<0>(problem_shape_mnkl), N = get<1>(problem_shape_mnkl), K = get<2>(problem_shape_mnkl);
    constexpr int R = 5;
    cute::array<uint32_t, R> shape_a = {1, 1, 1, 1, 1}, shape_b = shape_a, shape_s = shape_a, shape_z = shape_a;
    cute::array<uint64_t, R> stride_a = {0, 0, 0, 0, 0}, stride_b = stride_a, stride_s = stride_a, stride_z = stride_a;
    using EA = typename Base::SwappedElementA;
    using EB = typename Base::SwappedElementB;
    using ES = typename Base::NonVoidElementScale;
    using EZ = typename Base::NonVoidElementZero;
    Tensor tensor_a = make_tensor(static_cast<EA const*>(nullptr),
                                  cutlass::gemm::collective::detail::get_gmem_layout(make_shape(M, K, Int<1>{}),
                                                                                     p.ptr_dA[g]));
    Tensor tensor_b = make_tensor(static_cast<EB const*>(nullptr),
                                  cutlass::gemm::collective::detail::get_gmem_layout(make_shape(N, K, Int<1>{}),
                                                                                     p.ptr_dB[g]));
    cute::detail::fill_tma_gmem_shape_stride(p.tma_load_a, tensor_a, shape_a, stride_a);
    cute::detail::fill_tma_gmem_shape_stride(p.tma_load_b, tensor_b, shape_b, stride_b);
    const auto scale_k = ceil_div(K, p.chunk_size);
    Tensor tensor_s = make_tensor(cutlass::gemm::collective::detail::get_logical_ptr(static_cast<ES const*>(nullptr)),
                                  make_shape(M, scale_k, Int<1>{}), p.dS[g]);
    Tensor tensor_z = make_tensor(cutlass::gemm::collective::detail::get_logical_ptr(static_cast<EZ const*>(nullptr)),
                                  make_shape(M, scale_k, Int<1>{}), p.dS[g]);
    cute::detail::fill_tma_gmem_shape_stride(p.tma_load_scale, tensor_s, shape_s, stride_s);
    cute::detail::fill_tma_gmem_shape_stride(p.tma_load_zero, tensor_z, shape_z, stride_z);
    for (uint64_t& v : stride_a) v = (v * sizeof_bits_v<EA>) / 8;  // element strides -> bytes
    for (uint64_t& v : stride_b) v = (v * sizeof_bits_v<EB>) / 8;
    for (uint64_t& v : stride_s) v = (v * sizeof_bits_v<ES>) / 8;
    for (uint64_t& v : stride_z) v = (v * sizeof_bits_v<ES>) / 8;
    cute::tma_descriptor_replace_dims_strides_in_shared_mem(smem.smem_tensormap_A, shape_a, stride_a);
    cute::tma_descriptor_replace_dims_strides_in_shared_mem(smem.smem_tensormap_B, shape_b, stride_b);
    cute::tma_descriptor_replace_dims_strides_in_shared_mem(smem.smem_tensormap_scale, shape_s, stride_s);
    cute::tma_descriptor_replace_dims_strides_in_shared_mem(smem.smem_tensormap_zero, shape_z, stride_z);
  }

  template <class... TMs, class ProblemShape_MNKL>
  CUTLASS_DEVICE void tensormaps_perform_update(TensorMapStorage& smem, Params const& p,
                                                cute::tuple<TMs...> const&, ProblemShape_MNKL problem_shape_mnkl,
                                                int32_t next_batch) {
    static_assert(Base::IsGroupedGemmKernel, "grouped use only");
    if (cute::elect_one_sync()) {
      replace_addresses(smem, p, next_batch);
      replace_properties(smem, p, next_batch, problem_shape_mnkl);
    }
  }

  template <class... TMs>
  CUTLASS_DEVICE void tensormaps_cp_fence_release(TensorMapStorage& smem, cute::tuple<TMs...> const& maps) {
    if (cute::elect_one_sync()) {
      cute::tma_desc_commit_group();
      cute::tma_desc_wait_group();
    }
    // The whole warp (aligned instructions).
    cute::tma_descriptor_cp_fence_release(get<0>(maps), smem.smem_tensormap_A);
    cute::tma_descriptor_cp_fence_release(get<1>(maps), smem.smem_tensormap_B);
    cute::tma_descriptor_cp_fence_release(get<2>(maps), smem.smem_tensormap_scale);
    cute::tma_descriptor_cp_fence_release(get<3>(maps), smem.smem_tensormap_zero);
  }

  template <class... TMs>
  CUTLASS_DEVICE void tensormaps_fence_acquire(cute::tuple<TMs...> const& maps) {
    cute::tma_descriptor_fence_acquire(get<0>(maps));
    cute::tma_descriptor_fence_acquire(get<1>(maps));
    cute::tma_descriptor_fence_acquire(get<2>(maps));
    cute::tma_descriptor_fence_acquire(get<3>(maps));
  }
};

template <int TokenTile, int KTile>
struct GroupedW4 {
  // 128 weight rows x TokenTile tokens x KTile: the dense kernel's
  // cooperative tiles (K step 64 takes every group size its copy has; 128
  // takes groups of a multiple of 128 or K, w4a16_hopper_narrow.cu).
  using TileShape = Shape<_128, Int<TokenTile>, Int<KTile>>;
  using Cluster = Shape<_1, _1, _1>;
  using ProblemShape = cutlass::gemm::GroupProblemShape<Shape<int, int, int>>;
  using LayoutX = cutlass::layout::ColumnMajor;  // x^T: K-major rows
  using LayoutY = cutlass::layout::ColumnMajor;  // y^T column-major = y[rows][N]
  static constexpr int kAlign16 = 8;             // bf16 in 16 bytes
  static constexpr int kAlign4 = 32;             // int4 in 16 bytes
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutY*, kAlign16, Act, LayoutY*,
      kAlign16, cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative>::CollectiveOp;
  using BuiltMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cute::tuple<Quant, Act, Act>, WeightLayout*, kAlign4,
      Act, LayoutX*, kAlign16, float, TileShape, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative>::CollectiveOp;
  using Mainloop = ScaleAndZeroMainloop<BuiltMainloop>;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, Mainloop, Epilogue>;
  using Device = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using StrideX = typename Kernel::InternalStrideB;
  using StrideY = typename Kernel::InternalStrideD;
  using StrideS = typename Mainloop::StrideScale;
  using Shape3 = typename ProblemShape::UnderlyingProblemShape;
};

// The per-call group tables, carved from one device buffer (each array
// 256-byte aligned).
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
// shape, x/y pointers, x/y/scale strides, the weight layout; moe_w4a16_table_bytes (moe_w4a16_rows.cu) matches
constexpr size_t kTableEntryBytes = 12 + 2 * 8 + 3 * 16 + 256;

// One thread per expert: its rows [offsets[e], offsets[e+1]) of xs and y,
// and copies of the (shared) weight layout and scale stride.
template <class G>
__global__ void k_group_tables(int E, int N, int K, int G_, const int32_t* __restrict__ offsets, const Act* xs,
                               Act* y, WeightLayout wl, typename G::Shape3* shapes, const Act** px, Act** py,
                               typename G::StrideX* stx, typename G::StrideY* sty, typename G::StrideS* sts,
                               WeightLayout* wls) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= E) return;
  const int64_t r0 = offsets[e];
  const int rows = static_cast<int>(offsets[e + 1] - r0);
  shapes[e] = typename G::Shape3(N, rows, K);
  px[e] = xs + r0 * K;
  py[e] = y + r0 * N;
  stx[e] = cutlass::make_cute_packed_stride(typename G::StrideX{}, make_shape(rows, K, 1));
  sty[e] = cutlass::make_cute_packed_stride(typename G::StrideY{}, make_shape(N, rows, 1));
  sts[e] = cutlass::make_cute_packed_stride(typename G::StrideS{}, make_shape(N, G_, 1));
  wls[e] = wl;
}

template <int TokenTile, int KTile = 64>
cudaError_t run(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t), void* ctx, int sm_count,
                cudaStream_t stream) {
  using G = GroupedW4<TokenTile, KTile>;
  static_assert(sizeof(typename G::StrideX) <= 16 && sizeof(typename G::StrideY) <= 16 &&
                    sizeof(typename G::StrideS) <= 16 && sizeof(typename G::Shape3) <= 12 &&
                    sizeof(WeightLayout) <= 256,
                "table entries outgrew kTableEntryBytes");
  const int E = p.E, N = static_cast<int>(p.N), K = static_cast<int>(p.K);
  const int n_groups = static_cast<int>((p.K + p.group_size - 1) / p.group_size);
  W4HopperLayout L;
  L.N = p.N;
  L.K = p.K;
  L.group_size = p.group_size;
  L.n_groups = n_groups;
  Tables t{static_cast<char*>(tables), E};
  auto* shapes = t.take<typename G::Shape3>();
  auto* px = t.take<const Act*>();
  auto* py = t.take<Act*>();
  auto* stx = t.take<typename G::StrideX>();
  auto* sty = t.take<typename G::StrideY>();
  auto* sts = t.take<typename G::StrideS>();
  auto* wls = t.take<WeightLayout>();
  k_group_tables<G><<<(E + 127) / 128, 128, 0, stream>>>(
      E, N, K, n_groups, p.offsets, static_cast<const Act*>(p.xs), static_cast<Act*>(p.y), w4h_detail::weight_layout(L),
      shapes, px, py, stx, sty, sts, wls);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;

  typename G::Kernel::MainloopArguments mainloop{
      reinterpret_cast<const Quant**>(const_cast<const void**>(p.hq_table)),
      wls,
      px,
      stx,
      reinterpret_cast<const Act**>(const_cast<const void**>(p.hs_table)),
      sts,
      static_cast<int>(p.group_size),
      reinterpret_cast<const Act**>(const_cast<const void**>(p.hz_table))};
  typename G::Kernel::EpilogueArguments epilogue{{}, nullptr, sty, py, sty};
  epilogue.thread.alpha = 1.f;
  epilogue.thread.beta = 0.f;
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

}  // namespace moe_w4_detail
}  // namespace xqcuda
