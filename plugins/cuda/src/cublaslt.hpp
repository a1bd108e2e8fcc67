// cublaslt.hpp: cuBLASLt, loaded with dlopen at first use (never linked), so
// the plugin loads on machines without it (CI) and degrades to its own
// kernels there. Used for the dense GEMM halves of the dequant+GEMM W4A16
// path (large M), INT8 (INT32 accumulate) and FP8 W8A8, always "TN":
// D[M,N] = x[M,K] · W[N,K]^T with row-major x, W, D.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "kernels.hpp"

namespace xqcuda {

enum class GemmKind : int { BF16 = 0, F16 = 1, I8 = 2, FP8 = 3, F32 = 4 };

struct LtGemmShape {
  GemmKind kind;
  int64_t M, N, K;
  DType d_type;   // BF16/F16/F32 (I32 for I8)
  bool bias;      // epilogue bias of d_type, [N]
  bool outer_vec; // FP8: per-channel (W) and per-token (x) f32 scale vectors
  auto key() const { return std::make_tuple(static_cast<int>(kind), M, N, K, static_cast<int>(d_type), bias, outer_vec); }
  bool operator<(const LtGemmShape& o) const { return key() < o.key(); }
};

class CublasLt {
 public:
  CublasLt();
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  // dlopen + handle; idempotent. False (with *why) when the library or a
  // symbol is missing.
  bool load(std::string* why);
  bool loaded() const { return handle_ != nullptr; }

  // 0 = ran, 1 = no algorithm for this shape/type (unsupported), 2 = error.
  // w_scale (per-N) / x_scale (per-M) are device f32 vectors (outer_vec only).
  int gemm(const LtGemmShape& s, const void* W, const void* x, void* D, float alpha, const void* bias,
           const float* w_scale, const float* x_scale, void* workspace, size_t workspace_bytes, cudaStream_t stream,
           std::string* err);

 private:
  struct Api;
  struct Plan;
  std::unique_ptr<Api> api_;
  void* lib_ = nullptr;
  void* handle_ = nullptr;
  std::map<LtGemmShape, std::shared_ptr<Plan>> plans_;
  std::shared_ptr<Plan> plan_for(const LtGemmShape& s, size_t workspace_bytes, std::string* err, int* code);
};

}  // namespace xqcuda
