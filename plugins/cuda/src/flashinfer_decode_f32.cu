// flashinfer_decode_f32.cu: FlashInfer's decode with F32 output
// (flashinfer_decode.cuh; its own translation unit: nvcc time).
#include "flashinfer_decode.cuh"

namespace xqcuda::fi {

cudaError_t launch_f32(const PagedAttentionArgs& a, const Planned& p, cudaStream_t stream) {
  return launch<float>(a, p, stream);
}

}  // namespace xqcuda::fi
