// dtype.hpp: names and sizes of xq_dtype (the SDK table), conversion of
// element buffers.
#pragma once

#include <xquant/sdk/dtype.hpp>
#include <xquant/xq_abi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace xquant {

// Names and sizes: the SDK's one table (sdk/dtype.hpp).
using sdk::dtype_from_name;  // XQ_DTYPE_INVALID if unknown
using sdk::dtype_name;       // "F32", "BF16", ... (safetensors spelling)
using sdk::dtype_size;       // bytes per element; 0 for BLOCKS/INVALID

// Converts n elements of src (F32/F16/BF16/F64/I8..I64/U8..) to float.
void convert_to_f32(xq_dtype src_type, const void* src, float* dst, size_t n);
// Converts n floats to dst_type (F32/F16/BF16).
void convert_from_f32(const float* src, xq_dtype dst_type, void* dst, size_t n);

}  // namespace xquant
