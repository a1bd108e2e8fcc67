// moe_w8a8_sm90.cu: the grouped INT8 GEMM of the fused W8A8 MoE path
// (moe_w8a8.hpp, moe_w8a8_sm90.cuh): the cooperative 128x128x128
// instantiation (BF16 and F16 output) and the entry that picks the
// configuration. sm_90a only.
#include "moe_w8a8_sm90.cuh"

namespace xqcuda {

size_t moe_w8a8_table_bytes(int E) {
  return 7 * 256 + moe_w8_detail::kTableEntryBytes * static_cast<size_t>(E) + 256;
}

const char* moe_w8a8_config(MoeW8a8Tile t) {
  return t == MoeW8a8Tile::Pingpong64x256 ? "64x256x128 c1x2 ptr-array ping-pong"
                                          : "128x128x128 c1x2 ptr-array cooperative";
}

cudaError_t moe_w8a8_grouped_gemm(const MoeW8a8Gemm& p, void* tables, void* (*workspace)(void*, size_t),
                                  void* workspace_ctx, int sm_count, cudaStream_t stream) {
  using namespace moe_w8_detail;
  if (p.E < 1 || p.N <= 0 || p.K <= 0 || p.N % 16 != 0 || p.K % 16 != 0 || p.N > 2147483647LL ||
      p.K > 2147483647LL)
    return cudaErrorNotSupported;
  if (reinterpret_cast<uintptr_t>(p.a) % 16 != 0 || reinterpret_cast<uintptr_t>(p.d) % 16 != 0)
    return cudaErrorNotSupported;
  if (p.is_f16) return run<cutlass::half_t, CoopConfig>(p, tables, workspace, workspace_ctx, sm_count, stream);
  if (p.tile == MoeW8a8Tile::Pingpong64x256)
    return moe_w8a8_grouped_gemm_pingpong(p, tables, workspace, workspace_ctx, sm_count, stream);
  return run<cutlass::bfloat16_t, CoopConfig>(p, tables, workspace, workspace_ctx, sm_count, stream);
}

}  // namespace xqcuda
