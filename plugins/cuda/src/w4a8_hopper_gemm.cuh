// w4a8_hopper_gemm.cuh: one token-tile configuration of the Hopper W4A8-FP8
// GEMM (w4a8_hopper.hpp) as a template, with its launcher. Included by the
// translation units that instantiate the tiles (w4a8_hopper_tiles.cu,
// w4a8_hopper_wide.cu) and, for the weight layout only, by w4a8_hopper.cu.
//
// Mainloop: CUTLASS's mixed-input collective with the scale type
// cutlass::Array<float_e4m3_t, 8> (lookup-table mode), codes in the
// fragment-contiguous order below. Epilogue: a visitor tree
//   D = s_x[token] * (c[row] * acc) + bias[row]   (f32, rounded once to bf16)
// on CUTLASS's Sm90RowBroadcast (one value per output column: the tokens, as
// the GEMM is swapped) and Sm90ColBroadcast (one per weight row), the pattern
// of cutlass_w8a8_sm90.cuh.
#pragma once

#include "w4a8_hopper.hpp"

#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_visitor_compute_tma_warpspecialized.hpp>
#include <cutlass/epilogue/fusion/sm90_visitor_load_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

#include <cstring>
#include <mutex>
#include <unordered_map>

namespace xqcuda {
namespace w4a8_detail {

using namespace cute;
using Fp8 = cutlass::float_e4m3_t;
using Quant = cutlass::int4b_t;
using Lut = cutlass::Array<Fp8, 8>;

// Where each code lives so that one thread's values of one FP8 wgmma k32 step
// are contiguous (16 codes = one 64-bit shared-memory load): the A-operand
// thread/value layout of an E4M3 RS wgmma, restricted to one warp and inverted
// ((n, k) -> (thread, value)), values of a thread adjacent in their natural
// order (the lookup converter maps nibble i to byte i). CUTLASS builds the same
// layout in compute_memory_reordering_atom<float_e4m3_t>()
// (cutlass/util/mixed_dtype_utils.hpp), used by example 55's int4 x fp8 GEMM.
constexpr auto fragment_contiguous_atom() {
  using Atom = decltype(SM90::GMMA::rs_op_selector<Fp8, Fp8, float, Shape<_64, _16, _32>>());
  using Traits = MMA_Traits<Atom>;
  auto mma_nk = select<0, 2>(typename Traits::Shape_MNK{});
  auto mma_tv = typename Traits::ALayout{};
  auto warp_tv = make_layout_like(composition(mma_tv, make_shape(Int<32>{}, size<1>(mma_tv))));
  auto warp_nk = shape_div(mma_nk, size(typename Traits::ThrID{}) / Int<32>{});
  auto nk_to_tv = right_inverse(warp_tv).with_shape(warp_nk);
  auto nk_in_warp = blocked_product(nk_to_tv, Layout<_1>{});
  auto value_offset = logical_product(Layout<_1>{}, size<1>(mma_tv));
  auto thread_offset = make_layout(size<0>(warp_tv));
  auto tv_to_offset = select<1, 0>(logical_product(value_offset, thread_offset));
  return composition(tv_to_offset, nk_in_warp);
}

using WeightAtom = decltype(fragment_contiguous_atom());
using WeightStride = cutlass::detail::TagToStrideB_t<cutlass::layout::ColumnMajor>;  // (N, K, L), K-major
using WeightLayout = decltype(tile_to_shape(WeightAtom{}, Layout<Shape<int, int, int>, WeightStride>{}));

inline WeightLayout weight_layout(const W4A8Layout& L) {
  return tile_to_shape(WeightAtom{}, make_shape(static_cast<int>(L.N), static_cast<int>(L.K), 1));
}

// Everything the cached kernel parameters depend on (all 8-byte fields: no
// padding for memcmp and the hash).
struct PlanKey {
  const void *qw, *lut, *ch, *xq, *xs, *y, *bias, *ws;
  int64_t N, K, group, M, sm_count;
  bool operator==(const PlanKey& o) const { return std::memcmp(this, &o, sizeof(PlanKey)) == 0; }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    size_t h = 1469598103934665603ull;
    const auto* b = reinterpret_cast<const unsigned char*>(&k);
    for (size_t i = 0; i < sizeof(PlanKey); ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
  }
};

// One configuration: 128 weight rows x TokenTile tokens x 128 K (bytes of
// FP8), cluster 1x1, cooperative (two consumer warp groups share a tile),
// stream-K (few tiles still fill the SMs).
template <int TokenTile>
struct HopperW4A8 {
  using TileShape = Shape<_128, Int<TokenTile>, _128>;
  using Cluster = Shape<_1, _1, _1>;
  using Schedule = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
  using EpiSchedule = cutlass::epilogue::TmaWarpSpecializedCooperative;
  using Out = cutlass::bfloat16_t;
  static constexpr int kAlignOut = 8;   // bf16 elements in 16 bytes
  static constexpr int kAlignFp8 = 16;  // e4m3 elements in 16 bytes
  static constexpr int kAlign4 = 32;    // int4 elements in 16 bytes

  // Swapped GEMM: its rows are weight rows n, its columns tokens m.
  using TokenScale = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float, Stride<_0, _1, _0>>;
  using ChannelScale = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float, float, Stride<_1, _0, _0>>;
  using Bias = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float, float, Stride<_1, _0, _0>>;
  using Accum = cutlass::epilogue::fusion::Sm90AccFetch;
  using Mul = cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, float, float,
                                                     cutlass::FloatRoundStyle::round_to_nearest>;
  using ChannelAcc = cutlass::epilogue::fusion::Sm90EVT<Mul, ChannelScale, Accum>;
  using MulAdd = cutlass::epilogue::fusion::Sm90Compute<cutlass::homogeneous_multiply_add, Out, float,
                                                        cutlass::FloatRoundStyle::round_to_nearest>;
  using Fusion = cutlass::epilogue::fusion::Sm90EVT<MulAdd, TokenScale, ChannelAcc, Bias>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      void, cutlass::layout::ColumnMajor, kAlignOut,  // no C source: bias comes through the tree
      Out, cutlass::layout::ColumnMajor, kAlignOut,   // y^T column-major = y[M][N]
      EpiSchedule, Fusion>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      cute::tuple<Quant, Lut>, WeightLayout, kAlign4,   // codes, lookup tables
      Fp8, cutlass::layout::ColumnMajor, kAlignFp8,     // x^T: K-major activations
      float, TileShape, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      Schedule>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue,
                                                      cutlass::gemm::StreamKScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using Params = typename Kernel::Params;

  static typename Gemm::Arguments arguments(const W4A8Layout& L, const PlanKey& k) {
    const int n = static_cast<int>(L.N), m = static_cast<int>(k.M), kk = static_cast<int>(L.K);
    const int g = static_cast<int>(L.n_groups);
    using StrideX = typename Kernel::StrideB;
    using StrideS = typename Mainloop::StrideScale;
    using StrideC = typename Kernel::StrideC;
    using StrideD = typename Kernel::StrideD;
    typename TokenScale::Arguments token{static_cast<const float*>(k.xs), 1.f, {}};
    typename ChannelScale::Arguments channel{static_cast<const float*>(k.ch), 1.f, {}};
    typename Bias::Arguments bias{static_cast<const float*>(k.bias), 0.f, {}};
    typename ChannelAcc::Arguments channel_acc{channel, {}, {}};
    typename Fusion::Arguments fusion{token, channel_acc, bias, {}};
    typename Gemm::Arguments a{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {n, m, kk, 1},
        {static_cast<const Quant*>(k.qw), weight_layout(L), static_cast<const Fp8*>(k.xq),
         cutlass::make_cute_packed_stride(StrideX{}, make_shape(m, kk, 1)), static_cast<const Lut*>(k.lut),
         cutlass::make_cute_packed_stride(StrideS{}, make_shape(n, g, 1)), static_cast<int>(L.group_size)},
        {fusion, nullptr, cutlass::make_cute_packed_stride(StrideC{}, make_shape(n, m, 1)), static_cast<Out*>(const_cast<void*>(k.y)),
         cutlass::make_cute_packed_stride(StrideD{}, make_shape(n, m, 1))}};
    a.hw_info.sm_count = static_cast<int>(k.sm_count);
    return a;
  }

  static size_t workspace(const W4A8Layout& L, int64_t M, int sm_count) {
    PlanKey k{};
    k.M = M;
    k.sm_count = sm_count;
    return Gemm::get_workspace_size(arguments(L, k));
  }

  // The parameters CUTLASS builds for this key (TMA descriptors encoded on the
  // host, the shared-memory attribute set), built on first use and copied out
  // under the lock; false when CUTLASS refuses the problem.
  static bool plan(const W4A8Layout& L, const PlanKey& key, size_t ws_bytes, Params* out) {
    static std::mutex mu;
    static std::unordered_map<PlanKey, Params, PlanKeyHash> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(key); it != cache.end()) {
      *out = it->second;
      return true;
    }
    auto a = arguments(L, key);
    if (Gemm::can_implement(a) != cutlass::Status::kSuccess) return false;
    if (Gemm::get_workspace_size(a) > ws_bytes) return false;
    constexpr int smem = Kernel::SharedStorageSize;
    if (smem >= (48 << 10) &&
        cudaFuncSetAttribute(cutlass::device_kernel<Kernel>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
            cudaSuccess)
      return false;
    if (cache.size() >= 4096) cache.clear();  // bounded: buffers released and re-made leave entries behind
    *out = cache.emplace(key, Kernel::to_underlying_arguments(a, const_cast<void*>(key.ws))).first->second;
    return true;
  }

  static cudaError_t run(const W4A8Layout& L, const PlanKey& key, size_t ws_bytes, cudaStream_t stream) {
    Params p;
    if (!plan(L, key, ws_bytes, &p)) return cudaErrorNotSupported;
    // The stream-K locks count up during a launch and must start at zero.
    auto a = arguments(L, key);
    if (Kernel::initialize_workspace(a, const_cast<void*>(key.ws), stream) != cutlass::Status::kSuccess)
      return cudaErrorLaunchFailure;
    if (Gemm::run(p, stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    return cudaGetLastError();
  }
};

}  // namespace w4a8_detail
}  // namespace xqcuda
