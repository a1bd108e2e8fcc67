// moe_w4a16_sm90_t32.cu: the grouped W4A16 MoE GEMM (moe_w4a16_sm90.cuh)
// with 32-token tiles and K step 128, for experts with few tokens: the dense
// Hopper GEMM's `k128` tile (w4a16_hopper_narrow.cu), which beat its 64-token
// tiles by 16-21% at 16-32 rows on an H100 (docs/cuda.md, "Narrow token
// tiles"). Groups must be a multiple of 128 or K (moe_w4a16_grouped_gemm
// falls back to the 64-token tile otherwise).
#include "moe_w4a16_sm90.cuh"

namespace xqcuda {
cudaError_t moe_w4a16_grouped_gemm_t32(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                       void* ctx, int sm_count, cudaStream_t stream) {
  return moe_w4_detail::run<32, 128>(p, tables, workspace, ctx, sm_count, stream);
}
}  // namespace xqcuda
