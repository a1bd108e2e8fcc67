// w4a16_foreign.cu: device repack of the two common checkpoint layouts of
// 4-bit weights (AutoAWQ GEMM, GPTQ v1/v2) into the canonical form
// (int8 codes [N][K] in the signed domain, f32 scales and int8 zero points
// [N][G]), which w4_pack then turns into the native layout. The awq_dequantize
// / gptq_shuffle equivalents: a checkpoint never round-trips through the CPU.
#include "common.cuh"

namespace xqcuda {
namespace {

__constant__ int kAwqRev[8] = {0, 4, 1, 5, 2, 6, 3, 7};

__global__ void k_awq_codes(const int32_t* __restrict__ qweight, int64_t K, int64_t N, int8_t* __restrict__ codes) {
  const int64_t total = K * N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = idx / K, k = idx % K;  // output is [N][K]
    const uint32_t word = static_cast<uint32_t>(qweight[k * (N / 8) + n / 8]);
    const int q = static_cast<int>((word >> (4 * kAwqRev[n % 8])) & 0xFu);
    codes[idx] = static_cast<int8_t>(q - 8);
  }
}

__global__ void k_awq_groups(const int32_t* __restrict__ qzeros, const uint16_t* __restrict__ scales_f16, int64_t G,
                             int64_t N, float* __restrict__ scales, int8_t* __restrict__ zp) {
  const int64_t total = G * N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = idx / G, g = idx % G;  // output is [N][G]
    const uint32_t word = static_cast<uint32_t>(qzeros[g * (N / 8) + n / 8]);
    const int z = static_cast<int>((word >> (4 * kAwqRev[n % 8])) & 0xFu);
    zp[idx] = static_cast<int8_t>(z - 8);
    scales[idx] = __half2float(__ushort_as_half(scales_f16[g * N + n]));
  }
}

__global__ void k_gptq_codes(const int32_t* __restrict__ qweight, int64_t K, int64_t N, int8_t* __restrict__ codes) {
  const int64_t total = K * N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = idx / K, k = idx % K;
    const uint32_t word = static_cast<uint32_t>(qweight[(k / 8) * N + n]);
    const int q = static_cast<int>((word >> (4 * (k % 8))) & 0xFu);
    codes[idx] = static_cast<int8_t>(q - 8);
  }
}

__global__ void k_gptq_groups(const int32_t* __restrict__ qzeros, const uint16_t* __restrict__ scales_f16, int64_t G,
                              int64_t N, bool v1, float* __restrict__ scales, int8_t* __restrict__ zp) {
  const int64_t total = G * N;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t n = idx / G, g = idx % G;
    const uint32_t word = static_cast<uint32_t>(qzeros[g * (N / 8) + n / 8]);
    const int z = static_cast<int>((word >> (4 * (n % 8))) & 0xFu) + (v1 ? 1 : 0);
    zp[idx] = static_cast<int8_t>(z - 8);
    scales[idx] = __half2float(__ushort_as_half(scales_f16[g * N + n]));
  }
}

}  // namespace

cudaError_t awq_unpack(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales_f16, int64_t K, int64_t N,
                       int64_t group_size, int8_t* codes, float* scales, int8_t* zp, cudaStream_t stream) {
  if (N % 8 != 0 || group_size <= 0) return cudaErrorInvalidValue;
  const int64_t G = (K + group_size - 1) / group_size;
  k_awq_codes<<<blocks_for(K * N, 256), 256, 0, stream>>>(qweight, K, N, codes);
  k_awq_groups<<<blocks_for(G * N, 256), 256, 0, stream>>>(qzeros, scales_f16, G, N, scales, zp);
  return cudaGetLastError();
}

cudaError_t gptq_unpack(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales_f16, int64_t K,
                        int64_t N, int64_t n_groups, bool v1, int8_t* codes, float* scales, int8_t* zp,
                        cudaStream_t stream) {
  if (N % 8 != 0 || K % 8 != 0) return cudaErrorInvalidValue;
  k_gptq_codes<<<blocks_for(K * N, 256), 256, 0, stream>>>(qweight, K, N, codes);
  k_gptq_groups<<<blocks_for(n_groups * N, 256), 256, 0, stream>>>(qzeros, scales_f16, n_groups, N, v1, scales, zp);
  return cudaGetLastError();
}

}  // namespace xqcuda
