// op_name.hpp: the one table of kernel-op names (the XQ_OP_* enum of
// xq_kernel.h spelled without its prefix), for providers' messages and
// timing labels.
#pragma once

#include <xquant/xq_kernel.h>

namespace xquant::sdk {

inline const char* op_name(xq_op_type t) {
  switch (t) {
    case XQ_OP_MATMUL: return "MATMUL";
    case XQ_OP_QMATMUL: return "QMATMUL";
    case XQ_OP_DEQUANTIZE: return "DEQUANTIZE";
    case XQ_OP_RMS_NORM: return "RMS_NORM";
    case XQ_OP_ROPE: return "ROPE";
    case XQ_OP_ATTENTION: return "ATTENTION";
    case XQ_OP_SWIGLU: return "SWIGLU";
    case XQ_OP_ADD: return "ADD";
    case XQ_OP_GET_ROWS: return "GET_ROWS";
    case XQ_OP_MUL: return "MUL";
    case XQ_OP_QUANTIZE_ACT: return "QUANTIZE_ACT";
    case XQ_OP_CONVERT: return "CONVERT";
    case XQ_OP_ADD_RMS_NORM: return "ADD_RMS_NORM";
    case XQ_OP_ARGMAX: return "ARGMAX";
    case XQ_OP_KV_WRITE: return "KV_WRITE";
    case XQ_OP_PAGED_ATTENTION: return "PAGED_ATTENTION";
    case XQ_OP_MOE_ROUTE: return "MOE_ROUTE";
    case XQ_OP_MOE_COMBINE: return "MOE_COMBINE";
    case XQ_OP_ROPE_KV: return "ROPE_KV";
  }
  return "unknown";
}

}  // namespace xquant::sdk
