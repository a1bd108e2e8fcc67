#include "core/dtype.hpp"

#include "core/error.hpp"

#include <xquant/sdk/half.hpp>

#include <cstring>

namespace xquant {

namespace {
template <class T>
void widen(const void* src, float* dst, size_t n) {
  const T* s = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
}
}  // namespace

void convert_to_f32(xq_dtype src_type, const void* src, float* dst, size_t n) {
  switch (src_type) {
    case XQ_DTYPE_F32: std::memcpy(dst, src, n * 4); return;
    case XQ_DTYPE_F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = sdk::f16_to_f32(s[i]);
      return;
    }
    case XQ_DTYPE_BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = sdk::bf16_to_f32(s[i]);
      return;
    }
    case XQ_DTYPE_F64: widen<double>(src, dst, n); return;
    case XQ_DTYPE_I8: widen<int8_t>(src, dst, n); return;
    case XQ_DTYPE_U8: case XQ_DTYPE_BOOL: widen<uint8_t>(src, dst, n); return;
    case XQ_DTYPE_I16: widen<int16_t>(src, dst, n); return;
    case XQ_DTYPE_U16: widen<uint16_t>(src, dst, n); return;
    case XQ_DTYPE_I32: widen<int32_t>(src, dst, n); return;
    case XQ_DTYPE_U32: widen<uint32_t>(src, dst, n); return;
    case XQ_DTYPE_I64: widen<int64_t>(src, dst, n); return;
    case XQ_DTYPE_U64: widen<uint64_t>(src, dst, n); return;
    default: fail(XQ_ERR_UNSUPPORTED, "cannot convert {} to F32", dtype_name(src_type));
  }
}

void convert_from_f32(const float* src, xq_dtype dst_type, void* dst, size_t n) {
  switch (dst_type) {
    case XQ_DTYPE_F32: std::memcpy(dst, src, n * 4); return;
    case XQ_DTYPE_F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = sdk::f32_to_f16(src[i]);
      return;
    }
    case XQ_DTYPE_BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = sdk::f32_to_bf16(src[i]);
      return;
    }
    default: fail(XQ_ERR_UNSUPPORTED, "cannot convert F32 to {}", dtype_name(dst_type));
  }
}

}  // namespace xquant
