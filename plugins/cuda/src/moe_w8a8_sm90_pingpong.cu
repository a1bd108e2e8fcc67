// moe_w8a8_sm90_pingpong.cu: the ping-pong 64x256x128 instantiation of the
// grouped INT8 MoE GEMM (moe_w8a8_sm90.cuh), BF16 output. sm_90a only.
#include "moe_w8a8_sm90.cuh"

namespace xqcuda {

cudaError_t moe_w8a8_grouped_gemm_pingpong(const MoeW8a8Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                           void* ctx, int sm_count, cudaStream_t stream) {
  return moe_w8_detail::run<cutlass::bfloat16_t, moe_w8_detail::PingpongConfig>(p, tables, workspace, ctx, sm_count,
                                                                                 stream);
}

}  // namespace xqcuda
