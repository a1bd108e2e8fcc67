// cutlass_w8a8.cpp: which problems the CUTLASS scaled GEMMs take, and the
// dispatch by input type (the per-M tile choice lives beside each type's
// instantiations, cutlass_w8a8_sm90_{i8,fp8}.cu).
#include "cutlass_w8a8.hpp"

namespace xqcuda {
namespace {

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

bool cutlass_scaled_mm_fits(const ScaledMM& p) {
  if (p.ab != DType::I8 && p.ab != DType::F8E4M3) return false;
  if (p.y_type != DType::BF16 && p.y_type != DType::F16) return false;
  // int32 problem coordinates in the kernel; K, N multiples of 16 (see the header).
  if (p.M <= 0 || p.N <= 0 || p.K <= 0 || p.M > 2147483647LL || p.N > 2147483647LL || p.K > 2147483647LL)
    return false;
  if (p.K % 16 != 0 || p.N % 16 != 0) return false;
  // TMA moves x, w and y (16-byte aligned bases); the broadcast nodes load
  // scales and bias one element at a time (Sm90RowBroadcast's DefaultCopy).
  if (!aligned(p.x, 16) || !aligned(p.w, 16) || !aligned(p.y, 16) || !aligned(p.bias, 2)) return false;
  return aligned(p.sx, 4) && aligned(p.sw, 4);
}

const char* cutlass_scaled_mm_config(DType ab, int64_t M) {
  if (M <= 64) return ab == DType::I8 ? "64x64x256 c1x8" : "64x64x128 c1x8";
  if (M <= 128) return ab == DType::I8 ? "64x128x256 c2x1 pingpong" : "64x128x128 c2x1 pingpong";
  return ab == DType::I8 ? "128x128x128 c2x1 cooperative" : "128x128x128 c2x1 pingpong";
}

cudaError_t cutlass_scaled_mm(const ScaledMM& p, void* workspace, size_t workspace_bytes, int sm_count,
                              cudaStream_t stream) {
  if (!cutlass_scaled_mm_fits(p)) return cudaErrorNotSupported;
  return p.ab == DType::I8 ? cutlass_scaled_mm_i8(p, workspace, workspace_bytes, sm_count, stream)
                           : cutlass_scaled_mm_fp8(p, workspace, workspace_bytes, sm_count, stream);
}

}  // namespace xqcuda
