// w4a16_hopper_wide.cu: the large-batch schedule of the Hopper W4A16 GEMM:
// cooperative, stream-K, 128 weight rows x 256 tokens x K 64, so each
// converted weight fragment feeds twice the tokens of the 128-token tile
// (half the conversions per FLOP at M >= 1024). Compiled for sm_90a only.
#include "w4a16_hopper_define.cuh"

namespace xqcuda {
namespace w4h_detail {

using Wide = HopperW4<128, 256, 64, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                      cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;

XQ_W4H_DEFINE(wide256, Wide)

}  // namespace w4h_detail
}  // namespace xqcuda
