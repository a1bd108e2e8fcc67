// cutlass_w8a8.cpp: which problems the CUTLASS scaled GEMMs take, and the
// dispatch of a configuration to its input type's translation unit
// (cutlass_w8a8_sm90_{i8,fp8}.cu; the choice of configuration is
// cutlass_w8a8_configs.cpp's).
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

cudaError_t cutlass_scaled_mm(const ScaledMM& p, W8Config c, const W8Workspace& ws, int sm_count,
                              cudaStream_t stream) {
  if (!cutlass_scaled_mm_fits(p) || !w8_config_takes(c, p)) return cudaErrorNotSupported;
  return p.ab == DType::I8 ? cutlass_scaled_mm_i8(p, c, ws, sm_count, stream)
                           : cutlass_scaled_mm_fp8(p, c, ws, sm_count, stream);
}

}  // namespace xqcuda
