// reader.hpp: one module of a compressed-tensors checkpoint -> the canonical
// quantized tensor (pack-quantized and int/naive-quantized layouts).
#pragma once

#include "scheme.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/xq_format.h>

namespace xquant::ct {

// Fills `out` (buffers from host.alloc) for `module`; throws
// Error(XQ_ERR_NOT_FOUND) when the module is stored dense or ignored.
void read_module(const sdk::Host& host, const QuantConfig& qc, const xq_tensor_source& src, const std::string& module,
                 xq_quant_tensor& out);

}  // namespace xquant::ct
