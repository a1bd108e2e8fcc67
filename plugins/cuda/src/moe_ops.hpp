// moe_ops.hpp: the Mixture-of-Experts routing and combine ops of the `cuda`
// provider, MOE_ROUTE and MOE_COMBINE: launchers (moe_ops.cu) and their
// xq_op front end (moe_ops_check.cpp). Contracts in
// abi/include/xquant/xq_kernel.h.
#pragma once

#include <xquant/xq_kernel.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace xqcuda {

// Experts one MOE_ROUTE row may have (the per-lane register array of the
// one-warp-per-row kernel).
constexpr int64_t kMoeRouteMaxExperts = 1024;

// Per row t of logits [T, E]: softmax, top-k ids (descending p, lower id on
// ties) into ids [T, k] and weights [T, k] (renormalised when norm_topk).
cudaError_t moe_route(const float* logits, int64_t T, int64_t E, int64_t k, bool norm_topk, int32_t* ids,
                      float* weights, cudaStream_t stream);
// dst [T, N] += sum_j act(w[t, j]) * y[r(t, j)], r from where (or t*k + j).
cudaError_t moe_combine_rows(const float* y, int64_t R, const float* w, const int32_t* where, int64_t T, int64_t k,
                             int64_t N, bool sigmoid, float* dst, cudaStream_t stream);

bool is_moe_op(xq_op_type t);
bool check_moe_op(const xq_op& op, std::string* why);
void run_moe_op(const xq_op& op, cudaStream_t stream);  // throws xquant::sdk::Error

}  // namespace xqcuda
