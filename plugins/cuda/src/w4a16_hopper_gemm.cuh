// w4a16_hopper_gemm.cuh: one configuration of the Hopper W4A16 GEMM
// (w4a16_hopper.hpp) as a template, and its launcher with cached kernel
// parameters. Included by the translation units that instantiate the
// schedules (w4a16_hopper_coop.cu, w4a16_hopper_pingpong.cu,
// w4a16_hopper_wide.cu), one per file so nvcc compiles them in parallel.
//
// CUTLASS's `initialize` rebuilds the kernel parameters on every call: it
// encodes five TMA descriptors on the host (each through
// cudaGetDriverEntryPointByVersion + cuTensorMapEncodeTiled, see
// cute/atom/copy_traits_sm90_tma.hpp make_tma_copy_desc) and sets the kernel's
// shared-memory attribute. Here the parameters are built once per (weight,
// scales, shape, M, workspace) and each call only swaps the activation and
// output addresses in the two descriptors that hold them
// (cuTensorMapReplaceAddress, CUDA driver API), then zeroes the stream-K
// locks (initialize_workspace) and launches.
#pragma once

#include "w4a16_hopper.hpp"

#include <cuda.h>
#include <cuda_bf16.h>

#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

#include <cstring>
#include <mutex>
#include <unordered_map>

namespace xqcuda {
namespace w4h_detail {

using namespace cute;
using Act = cutlass::bfloat16_t;
using Quant = cutlass::int4b_t;

// Where each weight code lives so that one thread's values of one wgmma k16
// step are contiguous: the A-operand thread/value layout of a bf16 RS wgmma,
// restricted to one warp's 16x16 slice and inverted ((n, k) -> (thread,
// value)), then composed with "values of a thread are adjacent", the values
// themselves in the order `ValueOrder`. This is the reordering CUTLASS's
// example 55_hopper_mixed_dtype_gemm (reorder_utils.hpp,
// compute_memory_reordering_atom) feeds the same collective. It depends on
// the wgmma atom only, not on the tile, so every schedule reads one layout.
template <class ValueOrder>
constexpr auto fragment_contiguous_atom(ValueOrder value_order) {
  using Atom = decltype(SM90::GMMA::rs_op_selector<Act, Act, float, Shape<_64, _16, _32>>());
  using Traits = MMA_Traits<Atom>;
  auto mma_nk = select<0, 2>(typename Traits::Shape_MNK{});
  auto mma_tv = typename Traits::ALayout{};
  auto warp_tv = make_layout_like(composition(mma_tv, make_shape(Int<32>{}, size<1>(mma_tv))));
  auto warp_nk = shape_div(mma_nk, size(typename Traits::ThrID{}) / Int<32>{});
  auto nk_to_tv = right_inverse(warp_tv).with_shape(warp_nk);
  auto nk_in_warp = blocked_product(nk_to_tv, Layout<Shape<_1, _1>>{});
  auto value_offset = logical_product(value_order, size<1>(mma_tv) / size(value_order));
  auto thread_offset = make_layout(size<0>(warp_tv));
  auto tv_to_offset = select<1, 0>(logical_product(value_offset, thread_offset));
  return composition(tv_to_offset, nk_in_warp);
}

// Nibble order 0,2,4,6,1,3,5,7: the converter in
// cutlass/detail/collective/mixed_input_utils.hpp then builds two bf16 pairs
// from one shift of the 32-bit word.
using ValueOrder = Layout<Shape<_2, _4>, Stride<_4, _1>>;
using WeightAtom = decltype(fragment_contiguous_atom(ValueOrder{}));
using WeightStride = cutlass::detail::TagToStrideB_t<cutlass::layout::ColumnMajor>;  // (N, K, L), K-major
using WeightLayout = decltype(tile_to_shape(WeightAtom{}, Layout<Shape<int, int, int>, WeightStride>{}));

inline WeightLayout weight_layout(const W4HopperLayout& L) {
  return tile_to_shape(WeightAtom{}, make_shape(static_cast<int>(L.N), static_cast<int>(L.K), 1));
}

// cuTensorMapReplaceAddress, resolved once through the runtime (no link
// against libcuda, as CUTLASS does for cuTensorMapEncodeTiled).
inline CUresult replace_address(const void* desc, const void* address) {
  using Fn = CUresult (*)(CUtensorMap*, void*);
  static Fn fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapReplaceAddress", &p, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<Fn>(p);
  }();
  if (!fn) return CUDA_ERROR_NOT_FOUND;
  return fn(const_cast<CUtensorMap*>(static_cast<const CUtensorMap*>(desc)), const_cast<void*>(address));
}

// Everything the cached parameters depend on besides x and y.
struct PlanKey {
  const void *qw, *s, *z, *ws;
  int64_t N, K, group, M, sm_count;  // all 8 bytes: no padding for memcmp and the hash
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

// One GEMM configuration: a WeightTile (weight rows, wgmma's M) x TokenTile
// x KTile tile, cluster 1x1, with `Schedule` (cooperative: two consumer warp
// groups share one tile; ping-pong: each owns a tile and one's int4->bf16
// conversion overlaps the other's wgmma) and `Scheduler` (stream-K, so few
// tiles still fill the SMs, or the persistent data-parallel one, the only
// one ping-pong takes).
template <int WeightTile, int TokenTile, int KTile, class Schedule, class EpiSchedule, class Scheduler>
struct HopperW4 {
  using TileShape = Shape<Int<WeightTile>, Int<TokenTile>, Int<KTile>>;
  using Cluster = Shape<_1, _1, _1>;
  static constexpr int kAlign16 = 8;   // bf16 elements in 16 bytes
  static constexpr int kAlign4 = 32;   // int4 elements in 16 bytes
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      void, cutlass::layout::ColumnMajor, kAlign16,   // no C source (beta = 0)
      Act, cutlass::layout::ColumnMajor, kAlign16,    // y^T column-major = y[M][N]
      EpiSchedule>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      cute::tuple<Quant, Act, Act>, WeightLayout, kAlign4,   // codes, scales, offsets
      Act, cutlass::layout::ColumnMajor, kAlign16,            // x^T: K-major activations
      float, TileShape, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      Schedule>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue, Scheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  using Params = typename Kernel::Params;

  static typename Gemm::Arguments arguments(const W4HopperLayout& L, const void* qw, const void* s, const void* z,
                                            const void* x, int64_t M, void* y, int sm_count) {
    const int n = static_cast<int>(L.N), m = static_cast<int>(M), k = static_cast<int>(L.K);
    const int g = static_cast<int>(L.n_groups);
    using StrideX = typename Kernel::StrideB;
    using StrideS = typename Mainloop::StrideScale;
    using StrideC = typename Kernel::StrideC;
    using StrideD = typename Kernel::StrideD;
    typename Gemm::Arguments a{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {n, m, k, 1},
        {static_cast<const Quant*>(qw), weight_layout(L), static_cast<const Act*>(x),
         cutlass::make_cute_packed_stride(StrideX{}, make_shape(m, k, 1)), static_cast<const Act*>(s),
         cutlass::make_cute_packed_stride(StrideS{}, make_shape(n, g, 1)), static_cast<int>(L.group_size),
         static_cast<const Act*>(z)},
        {{1.f, 0.f},
         nullptr,
         cutlass::make_cute_packed_stride(StrideC{}, make_shape(n, m, 1)),
         static_cast<Act*>(y),
         cutlass::make_cute_packed_stride(StrideD{}, make_shape(n, m, 1))}};
    a.hw_info.sm_count = sm_count;
    return a;
  }

  static size_t workspace(const W4HopperLayout& L, int64_t M, int sm_count) {
    return Gemm::get_workspace_size(arguments(L, nullptr, nullptr, nullptr, nullptr, M, nullptr, sm_count));
  }

  // Copies into `out` the parameters built by CUTLASS for this key (building
  // them on first use); false when CUTLASS refuses the problem. Built with
  // placeholder x/y addresses (the weight's own, 16-byte aligned) that every
  // call replaces. Copied under the lock, so a concurrent clear() of the
  // cache cannot pull them from under a caller.
  static bool plan(const PlanKey& key, const W4HopperLayout& L, size_t ws_bytes, Params* out) {
    static std::mutex mu;
    static std::unordered_map<PlanKey, Params, PlanKeyHash> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(key); it != cache.end()) {
      *out = it->second;
      return true;
    }
    auto a = arguments(L, key.qw, key.s, key.z, key.qw, key.M, const_cast<void*>(key.qw), key.sm_count);
    if (Gemm::can_implement(a) != cutlass::Status::kSuccess) return false;
    if (Gemm::get_workspace_size(a) > ws_bytes) return false;
    // Per device, so on every new entry (a key's pointers belong to one device).
    constexpr int smem = Kernel::SharedStorageSize;
    if (smem >= (48 << 10) &&
        cudaFuncSetAttribute(cutlass::device_kernel<Kernel>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
            cudaSuccess)
      return false;
    // Bounded: weights released and re-made leave entries behind (each ~1 KB).
    if (cache.size() >= 4096) cache.clear();
    *out = cache.emplace(key, Kernel::to_underlying_arguments(a, const_cast<void*>(key.ws))).first->second;
    return true;
  }

  static cudaError_t run(const W4HopperLayout& L, const void* qw, const void* s, const void* z, const void* x,
                         int64_t M, void* y, void* ws, size_t ws_bytes, int sm_count, cudaStream_t stream) {
    const PlanKey key{qw, s, z, ws, L.N, L.K, L.group_size, M, sm_count};
    Params p;
    if (!plan(key, L, ws_bytes, &p)) return cudaErrorNotSupported;
    if (replace_address(p.mainloop.tma_load_b.get_tma_descriptor(), x) != CUDA_SUCCESS ||
        replace_address(p.epilogue.tma_store_d.get_tma_descriptor(), y) != CUDA_SUCCESS)
      return cudaErrorInvalidValue;
    // The stream-K locks count up during a launch and must start at zero.
    auto a = arguments(L, qw, s, z, x, M, y, sm_count);
    if (Kernel::initialize_workspace(a, ws, stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    if (Gemm::run(p, stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    return cudaGetLastError();
  }

  // CUTLASS's own per-call path (initialize + run), kept for the A/B
  // measurement of the cache (XQUANT_CUDA_W4_HOPPER_PLAN=0).
  static cudaError_t run_uncached(const W4HopperLayout& L, const void* qw, const void* s, const void* z,
                                  const void* x, int64_t M, void* y, void* ws, size_t ws_bytes, int sm_count,
                                  cudaStream_t stream) {
    auto a = arguments(L, qw, s, z, x, M, y, sm_count);
    if (Gemm::can_implement(a) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
    if (Gemm::get_workspace_size(a) > ws_bytes) return cudaErrorInvalidValue;
    Gemm gemm;
    if (gemm.initialize(a, ws, stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    return cudaGetLastError();
  }
};

}  // namespace w4h_detail
}  // namespace xqcuda
