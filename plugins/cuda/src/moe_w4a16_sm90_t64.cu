// moe_w4a16_sm90_t64.cu: the grouped W4A16 MoE GEMM (moe_w4a16_sm90.cuh)
// with 64-token tiles, for experts of up to about 64 tokens.
#include "moe_w4a16_sm90.cuh"

namespace xqcuda {
cudaError_t moe_w4a16_grouped_gemm_t64(const MoeW4Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                       void* ctx, int sm_count, cudaStream_t stream) {
  return moe_w4_detail::run<64>(p, tables, workspace, ctx, sm_count, stream);
}
}  // namespace xqcuda
