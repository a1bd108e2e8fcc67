#include "core/dtype.hpp"

#include "core/error.hpp"

#include <xquant/sdk/half.hpp>

#include <cstring>

namespace xquant {

const char* dtype_name(xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F32: return "F32";
    case XQ_DTYPE_F16: return "F16";
    case XQ_DTYPE_BF16: return "BF16";
    case XQ_DTYPE_F64: return "F64";
    case XQ_DTYPE_I8: return "I8";
    case XQ_DTYPE_U8: return "U8";
    case XQ_DTYPE_I16: return "I16";
    case XQ_DTYPE_U16: return "U16";
    case XQ_DTYPE_I32: return "I32";
    case XQ_DTYPE_U32: return "U32";
    case XQ_DTYPE_I64: return "I64";
    case XQ_DTYPE_U64: return "U64";
    case XQ_DTYPE_BOOL: return "BOOL";
    case XQ_DTYPE_F8_E4M3: return "F8_E4M3";
    case XQ_DTYPE_F8_E5M2: return "F8_E5M2";
    case XQ_DTYPE_BLOCKS: return "BLOCKS";
    default: return "INVALID";
  }
}

xq_dtype dtype_from_name(const std::string& name) {
  for (int t = XQ_DTYPE_F32; t <= XQ_DTYPE_BLOCKS; ++t)
    if (name == dtype_name(static_cast<xq_dtype>(t))) return static_cast<xq_dtype>(t);
  return XQ_DTYPE_INVALID;
}

size_t dtype_size(xq_dtype t) {
  switch (t) {
    case XQ_DTYPE_F64: case XQ_DTYPE_I64: case XQ_DTYPE_U64: return 8;
    case XQ_DTYPE_F32: case XQ_DTYPE_I32: case XQ_DTYPE_U32: return 4;
    case XQ_DTYPE_F16: case XQ_DTYPE_BF16: case XQ_DTYPE_I16: case XQ_DTYPE_U16: return 2;
    case XQ_DTYPE_I8: case XQ_DTYPE_U8: case XQ_DTYPE_BOOL: case XQ_DTYPE_F8_E4M3: case XQ_DTYPE_F8_E5M2: return 1;
    default: return 0;
  }
}

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
