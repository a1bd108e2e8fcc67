// w4a16_hopper_narrow.cu: the small-batch schedules of the Hopper W4A16 GEMM:
// cooperative, stream-K, 128 weight rows x 16 or 32 tokens. At M <= 32 the
// 64-token tile of w4a16_hopper_coop.cu spends half or more of each stage's
// activation buffer and wgmma work on padding; a narrow token tile frees that
// shared memory for more pipeline stages (more weight bytes in flight a CTA)
// and shortens each wgmma. Two K steps each: 64 (every group size the
// Hopper layout takes; schedule Narrow) and 128 (a stage twice as long;
// groups of a multiple of 128 or K, as the 64-token ping-pong; schedule
// K128). K 128 with 48 and 64 tokens was measured and not kept: on an H100
// it lost to the 64-token tiles at 40 and 48 rows and gained 1-2% at 64
// (docs/cuda.md, "Narrow token tiles"). CUTLASS's own mixed-input example
// (examples/55_hopper_mixed_dtype_gemm) runs this collective with a 128 x 16
// tile and the operands swapped as here. Compiled for sm_90a only.
#include "w4a16_hopper_define.cuh"

namespace xqcuda {
namespace w4h_detail {

template <int TokenTile, int KTile>
using Narrow = HopperW4<128, TokenTile, KTile, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                        cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;

using Narrow16 = Narrow<16, 64>;
using Narrow32 = Narrow<32, 64>;
using K128x16 = Narrow<16, 128>;
using K128x32 = Narrow<32, 128>;
XQ_W4H_DEFINE(narrow16, Narrow16)
XQ_W4H_DEFINE(narrow32, Narrow32)
XQ_W4H_DEFINE(k128x16, K128x16)
XQ_W4H_DEFINE(k128x32, K128x32)

}  // namespace w4h_detail
}  // namespace xqcuda
