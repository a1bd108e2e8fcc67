// dtype.hpp: the one table of xq_dtype names and element sizes, shared by
// the runtime, the SDK and the plugins.
//
// Names are the safetensors spelling ("F32", "BF16", "F8_E4M3"), the same
// strings the safetensors reference writes (safetensors/src/tensor.rs,
// enum Dtype), so a checkpoint's dtype and ours read alike; `torch` is the
// torch_dtype a HF config.json writes for the float types.
#pragma once

#include <xquant/xq_abi.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace xquant::sdk {

struct DtypeInfo {
  xq_dtype dtype;
  const char* name;   // safetensors spelling
  uint32_t size;      // bytes per element; 0 where elements are not addressable (BLOCKS)
  const char* torch;  // torch_dtype for the float types, else nullptr
};

inline constexpr DtypeInfo kDtypeTable[] = {
    {XQ_DTYPE_F32, "F32", 4, "float32"},   {XQ_DTYPE_F16, "F16", 2, "float16"},
    {XQ_DTYPE_BF16, "BF16", 2, "bfloat16"}, {XQ_DTYPE_F64, "F64", 8, "float64"},
    {XQ_DTYPE_I8, "I8", 1, nullptr},        {XQ_DTYPE_U8, "U8", 1, nullptr},
    {XQ_DTYPE_I16, "I16", 2, nullptr},      {XQ_DTYPE_U16, "U16", 2, nullptr},
    {XQ_DTYPE_I32, "I32", 4, nullptr},      {XQ_DTYPE_U32, "U32", 4, nullptr},
    {XQ_DTYPE_I64, "I64", 8, nullptr},      {XQ_DTYPE_U64, "U64", 8, nullptr},
    {XQ_DTYPE_BOOL, "BOOL", 1, nullptr},    {XQ_DTYPE_F8_E4M3, "F8_E4M3", 1, nullptr},
    {XQ_DTYPE_F8_E5M2, "F8_E5M2", 1, nullptr}, {XQ_DTYPE_BLOCKS, "BLOCKS", 0, nullptr},
};

// The table row of t; nullptr for XQ_DTYPE_INVALID and values outside the enum.
constexpr const DtypeInfo* dtype_info(xq_dtype t) noexcept {
  for (const auto& d : kDtypeTable)
    if (d.dtype == t) return &d;
  return nullptr;
}

// "F32", "BF16", ...; "INVALID" for XQ_DTYPE_INVALID or an unknown value.
constexpr const char* dtype_name(xq_dtype t) noexcept {
  const DtypeInfo* d = dtype_info(t);
  return d ? d->name : "INVALID";
}

// The dtype spelled `name` (exact, upper case); XQ_DTYPE_INVALID if none.
constexpr xq_dtype dtype_from_name(std::string_view name) noexcept {
  for (const auto& d : kDtypeTable)
    if (name == d.name) return d.dtype;
  return XQ_DTYPE_INVALID;
}

// Bytes per element; 0 for BLOCKS and INVALID.
constexpr size_t dtype_size(xq_dtype t) noexcept {
  const DtypeInfo* d = dtype_info(t);
  return d ? d->size : 0;
}

// "float32", "float16", "bfloat16", "float64"; "" for the others.
constexpr const char* torch_dtype_name(xq_dtype t) noexcept {
  const DtypeInfo* d = dtype_info(t);
  return d && d->torch ? d->torch : "";
}

}  // namespace xquant::sdk
