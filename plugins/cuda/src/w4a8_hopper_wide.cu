// w4a8_hopper_wide.cu: the 256-token tile of the Hopper W4A8 GEMM
// (w4a8_hopper_gemm.cuh), for M >= kW4A8WideMinM. Compiled for sm_90a only.
#include "w4a8_hopper_gemm.cuh"
#include "w4a8_hopper_tiles.hpp"

namespace xqcuda {
namespace w4a8_detail {

size_t t256_workspace(const W4A8Layout& L, int64_t M, int sm_count) {
  return HopperW4A8<256>::workspace(L, M, sm_count);
}
cudaError_t t256_run(const W4A8Layout& L, const PlanKey& key, size_t ws_bytes, cudaStream_t stream) {
  return HopperW4A8<256>::run(L, key, ws_bytes, stream);
}

}  // namespace w4a8_detail
}  // namespace xqcuda
