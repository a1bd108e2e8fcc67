// w4a16_hopper.cu: the Hopper W4A16 GEMM (w4a16_hopper.hpp): CUTLASS's
// mixed-input wgmma collective instantiated for int4 weights with bf16 group
// scales and offsets, bf16 activations and output, plus the device repack of
// canonical codes into the order its register fragments read.
// Compiled for sm_90a only (plugins/cuda/CMakeLists.txt).
#include "w4a16_hopper.hpp"

#include <cuda_bf16.h>

#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>

namespace xqcuda {
namespace {

using namespace cute;
using Act = cutlass::bfloat16_t;
using Quant = cutlass::int4b_t;

// Where each weight code lives so that one thread's values of one wgmma k16
// step are contiguous: the A-operand thread/value layout of a bf16 RS wgmma,
// restricted to one warp's 16x16 slice and inverted ((n, k) -> (thread,
// value)), then composed with "values of a thread are adjacent", the values
// themselves in the order `ValueOrder`. This is the reordering CUTLASS's
// example 55_hopper_mixed_dtype_gemm (reorder_utils.hpp,
// compute_memory_reordering_atom) feeds the same collective.
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

WeightLayout weight_layout(const W4HopperLayout& L) {
  return tile_to_shape(WeightAtom{}, make_shape(static_cast<int>(L.N), static_cast<int>(L.K), 1));
}

// One GEMM configuration: a 128 (weight rows) x TokenTile x 64 tile, two
// consumer warpgroups (cooperative), stream-K so few tiles still fill the SMs.
template <int TokenTile>
struct HopperW4 {
  using TileShape = Shape<_128, Int<TokenTile>, _64>;
  using Cluster = Shape<_1, _1, _1>;
  static constexpr int kAlign16 = 8;   // bf16 elements in 16 bytes
  static constexpr int kAlign4 = 32;   // int4 elements in 16 bytes
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,
      void, cutlass::layout::ColumnMajor, kAlign16,   // no C source (beta = 0)
      Act, cutlass::layout::ColumnMajor, kAlign16,    // y^T column-major = y[M][N]
      cutlass::epilogue::TmaWarpSpecializedCooperative>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,
      cute::tuple<Quant, Act, Act>, WeightLayout, kAlign4,   // codes, scales, offsets
      Act, cutlass::layout::ColumnMajor, kAlign16,            // x^T: K-major activations
      float, TileShape, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue,
                                                      cutlass::gemm::StreamKScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

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

  static cudaError_t run(const W4HopperLayout& L, const void* qw, const void* s, const void* z, const void* x,
                         int64_t M, void* y, void* ws, size_t ws_bytes, int sm_count, cudaStream_t stream) {
    auto a = arguments(L, qw, s, z, x, M, y, sm_count);
    if (Gemm::can_implement(a) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
    if (Gemm::get_workspace_size(a) > ws_bytes) return cudaErrorInvalidValue;
    Gemm gemm;
    if (gemm.initialize(a, ws, stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    if (gemm.run(stream) != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
    return cudaGetLastError();
  }
};

// Token tile by batch: 64 keeps the grid and the register-held B tile small
// for M <= 64; 128 above, where the tile's reuse of each converted weight
// fragment pays for the larger accumulator.
constexpr int64_t kSmallTokenTileMaxM = 64;

__global__ void k_w4h_pack(W4HopperLayout L, WeightLayout layout, const int8_t* __restrict__ codes,
                           const int32_t* __restrict__ perm, uint32_t* __restrict__ out) {
  const int64_t total = L.N * L.K;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i / L.K, c = i % L.K;
    const int code = codes[n * L.K + (perm ? perm[c] : c)];
    const int64_t at = layout(static_cast<int>(n), static_cast<int>(c), 0);
    // Several threads fill one word; the buffer starts zeroed.
    atomicOr(out + (at >> 3), (static_cast<uint32_t>(code) & 0xFu) << (4 * (at & 7)));
  }
}

__global__ void k_w4h_pack_scales(W4HopperLayout L, const float* __restrict__ scales, const int8_t* __restrict__ zp,
                                  __nv_bfloat16* __restrict__ s_out, __nv_bfloat16* __restrict__ z_out) {
  const int64_t total = L.N * L.n_groups;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t g = i / L.N, n = i % L.N;
    const __nv_bfloat16 s = __float2bfloat16_rn(scales[n * L.n_groups + g]);
    const float zero = zp ? static_cast<float>(zp[n * L.n_groups + g]) : 0.f;
    s_out[i] = s;
    z_out[i] = __float2bfloat16_rn(-__bfloat162float(s) * zero);
  }
}

__global__ void k_add_bias_rows(__nv_bfloat16* __restrict__ y, int64_t M, int64_t N, const void* __restrict__ bias,
                                bool bias_is_f32) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = i % N;
    const float b = bias_is_f32 ? static_cast<const float*>(bias)[n]
                                : __bfloat162float(static_cast<const __nv_bfloat16*>(bias)[n]);
    y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + b);
  }
}

unsigned grid_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : b > 65535LL * 16 ? 65535LL * 16 : b);
}

}  // namespace

bool w4h_supported(int64_t N, int64_t K, int64_t group_size, const char** why) {
  const char* reason = nullptr;
  if (N <= 0 || K <= 0 || N % 16 != 0) reason = "N must be a positive multiple of 16";
  else if (K % 64 != 0) reason = "K must be a multiple of 64";
  else if (group_size != K && group_size % 64 != 0) reason = "the group size must be K or a multiple of 64";
  else if (N * K > INT32_MAX) reason = "N*K must be below 2^31 (the layout's offsets are 32-bit)";
  if (why) *why = reason;
  return reason == nullptr;
}

size_t w4h_weight_bytes(const W4HopperLayout& L) { return static_cast<size_t>(L.N * L.K / 2); }

cudaError_t w4h_pack(const W4HopperLayout& L, const int8_t* codes, const int32_t* perm, void* qw,
                     cudaStream_t stream) {
  if (!w4h_supported(L.N, L.K, L.group_size, nullptr)) return cudaErrorInvalidValue;
  cudaError_t e = cudaMemsetAsync(qw, 0, w4h_weight_bytes(L), stream);
  if (e != cudaSuccess) return e;
  k_w4h_pack<<<grid_for(L.N * L.K), 256, 0, stream>>>(L, weight_layout(L), codes, perm, static_cast<uint32_t*>(qw));
  return cudaGetLastError();
}

cudaError_t w4h_pack_scales(const W4HopperLayout& L, const float* scales, const int8_t* zp, void* s_bf16,
                            void* z_bf16, cudaStream_t stream) {
  k_w4h_pack_scales<<<grid_for(L.N * L.n_groups), 256, 0, stream>>>(
      L, scales, zp, static_cast<__nv_bfloat16*>(s_bf16), static_cast<__nv_bfloat16*>(z_bf16));
  return cudaGetLastError();
}

size_t w4h_workspace_bytes(const W4HopperLayout& L, int64_t M, int sm_count) {
  return M <= kSmallTokenTileMaxM ? HopperW4<64>::workspace(L, M, sm_count) : HopperW4<128>::workspace(L, M, sm_count);
}

cudaError_t w4h_gemm(const W4HopperLayout& L, const void* qw, const void* s_bf16, const void* z_bf16, const void* x,
                     int64_t M, void* y, const void* bias, bool bias_is_f32, void* workspace, size_t workspace_bytes,
                     int sm_count, cudaStream_t stream) {
  if (M <= 0) return cudaSuccess;
  if (M > INT32_MAX) return cudaErrorNotSupported;
  const cudaError_t e =
      M <= kSmallTokenTileMaxM
          ? HopperW4<64>::run(L, qw, s_bf16, z_bf16, x, M, y, workspace, workspace_bytes, sm_count, stream)
          : HopperW4<128>::run(L, qw, s_bf16, z_bf16, x, M, y, workspace, workspace_bytes, sm_count, stream);
  if (e != cudaSuccess || !bias) return e;
  k_add_bias_rows<<<grid_for(M * L.N), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(y), M, L.N, bias, bias_is_f32);
  return cudaGetLastError();
}

}  // namespace xqcuda
