// moe_routing.cu: the routing side of the fused mixture-of-experts path:
// sorting routing slots by expert into per-expert runs padded to the GEMM's
// token block (as vLLM's moe_align_block_size,
// vllm/csrc/moe/moe_align_sum_kernels.cu), and the weighted combine of the
// top-k expert outputs of each token.
#include "common.cuh"

namespace xqcuda {
namespace {

constexpr int kAlignThreads = 1024;

// One block: count slots per expert in shared memory, lay the experts' runs
// out padded to `block`, fill with the padding value, then scatter the slots.
__global__ void __launch_bounds__(kAlignThreads)
    k_moe_align(const int32_t* __restrict__ ids, int64_t n_slots, int E, int block, int64_t max_blocks,
                int32_t* __restrict__ sorted, int32_t* __restrict__ block_expert) {
  __shared__ int count[kMoeMaxExperts];
  __shared__ int start[kMoeMaxExperts + 1];
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int64_t s = threadIdx.x; s < n_slots; s += blockDim.x) {
    const int e = ids[s];
    if (e >= 0 && e < E) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int acc = 0;
    for (int e = 0; e < E; ++e) {
      start[e] = acc;
      acc += (count[e] + block - 1) / block * block;
    }
    start[E] = acc;
  }
  __syncthreads();
  const int64_t used_rows = start[E];
  for (int64_t r = threadIdx.x; r < max_blocks * block; r += blockDim.x)
    sorted[r] = static_cast<int32_t>(n_slots);
  for (int64_t b = threadIdx.x; b < max_blocks; b += blockDim.x) {
    int e = -1;
    if (b * block < used_rows) {
      // The last expert whose run starts at or before this block.
      int lo = 0, hi = E - 1;
      while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (start[mid] <= b * block) lo = mid;
        else hi = mid - 1;
      }
      e = lo;
    }
    block_expert[b] = e;
  }
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;  // reused as the fill cursor
  __syncthreads();
  for (int64_t s = threadIdx.x; s < n_slots; s += blockDim.x) {
    const int e = ids[s];
    if (e >= 0 && e < E) sorted[start[e] + atomicAdd(&count[e], 1)] = static_cast<int32_t>(s);
  }
}

__global__ void k_moe_combine(const float* __restrict__ ys, const float* __restrict__ w,
                              const int32_t* __restrict__ ids, int64_t T, int top_k, int E, int64_t N, void* dst,
                              DType dst_type) {
  const int64_t total = T * N;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / N, n = idx % N;
    float acc = 0.f;
    for (int j = 0; j < top_k; ++j) {
      const int64_t s = t * top_k + j;
      const int e = ids[s];
      if (e >= 0 && e < E) acc += w[s] * ys[s * N + n];
    }
    store_from_float(dst, dst_type, idx, acc);
  }
}

}  // namespace

cudaError_t moe_align(const int32_t* expert_ids, int64_t n_slots, int n_experts, int block, int32_t* sorted,
                      int32_t* block_expert, cudaStream_t stream) {
  if (n_experts < 1 || n_experts > kMoeMaxExperts || block < 1) return cudaErrorInvalidValue;
  const int64_t max_blocks = moe_max_blocks(n_slots, n_experts, block);
  k_moe_align<<<1, kAlignThreads, 0, stream>>>(expert_ids, n_slots, n_experts, block, max_blocks, sorted,
                                               block_expert);
  return cudaGetLastError();
}

cudaError_t moe_combine(const float* ys, const float* weights, const int32_t* expert_ids, int64_t T, int top_k,
                        int n_experts, int64_t N, void* dst, DType dst_type, cudaStream_t stream) {
  if (T * N == 0) return cudaSuccess;
  k_moe_combine<<<blocks_for(T * N, 256), 256, 0, stream>>>(ys, weights, expert_ids, T, top_k, n_experts, N, dst,
                                                            dst_type);
  return cudaGetLastError();
}

}  // namespace xqcuda
