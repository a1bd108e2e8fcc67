// w4a8_hopper_tiles.cu: the 64- and 128-token tiles of the Hopper W4A8 GEMM
// (w4a8_hopper_gemm.cuh). Compiled for sm_90a only.
#include "w4a8_hopper_gemm.cuh"
#include "w4a8_hopper_tiles.hpp"

namespace xqcuda {
namespace w4a8_detail {

size_t t64_workspace(const W4A8Layout& L, int64_t M, int sm_count) { return HopperW4A8<64>::workspace(L, M, sm_count); }
cudaError_t t64_run(const W4A8Layout& L, const PlanKey& key, size_t ws_bytes, cudaStream_t stream) {
  return HopperW4A8<64>::run(L, key, ws_bytes, stream);
}
size_t t128_workspace(const W4A8Layout& L, int64_t M, int sm_count) {
  return HopperW4A8<128>::workspace(L, M, sm_count);
}
cudaError_t t128_run(const W4A8Layout& L, const PlanKey& key, size_t ws_bytes, cudaStream_t stream) {
  return HopperW4A8<128>::run(L, key, ws_bytes, stream);
}

}  // namespace w4a8_detail
}  // namespace xqcuda
