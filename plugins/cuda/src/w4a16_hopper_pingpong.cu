// w4a16_hopper_pingpong.cu: the ping-pong schedules of the Hopper W4A16 GEMM:
// each consumer warp group owns a tile, so one group's int4->bf16 conversion
// overlaps the other's wgmma (CUTLASS
// gemm/kernel/sm90_gemm_tma_warpspecialized_pingpong.hpp); persistent
// data-parallel tiles (ping-pong takes no stream-K). 128 weight rows x 64
// tokens x K 128 (a longer K step per barrier for small batches) and
// 128 x 128 x 64. Compiled for sm_90a only.
#include "w4a16_hopper_define.cuh"

namespace xqcuda {
namespace w4h_detail {

template <int TokenTile, int KTile>
using Pingpong = HopperW4<128, TokenTile, KTile, cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                          cutlass::epilogue::TmaWarpSpecialized, cutlass::gemm::PersistentScheduler>;

using Pingpong64 = Pingpong<64, 128>;
using Pingpong128 = Pingpong<128, 64>;
XQ_W4H_DEFINE(pingpong64, Pingpong64)
XQ_W4H_DEFINE(pingpong128, Pingpong128)

}  // namespace w4h_detail
}  // namespace xqcuda
