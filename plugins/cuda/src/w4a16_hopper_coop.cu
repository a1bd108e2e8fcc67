// w4a16_hopper_coop.cu: the cooperative stream-K schedules of the Hopper
// W4A16 GEMM (the kernel's first configuration): 128 weight rows x 64 or 128
// tokens x K 64; the two consumer warp groups share one tile, stream-K splits
// K so few tiles still fill the SMs. Compiled for sm_90a only.
#include "w4a16_hopper_define.cuh"

namespace xqcuda {
namespace w4h_detail {

template <int TokenTile>
using Coop = HopperW4<128, TokenTile, 64, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                      cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;

using Coop64 = Coop<64>;
using Coop128 = Coop<128>;
XQ_W4H_DEFINE(coop64, Coop64)
XQ_W4H_DEFINE(coop128, Coop128)

}  // namespace w4h_detail
}  // namespace xqcuda
