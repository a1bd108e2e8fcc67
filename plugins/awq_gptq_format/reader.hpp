// reader.hpp: one Linear of an AWQ or GPTQ checkpoint -> the canonical
// quantized tensor. Every stored tensor's dtype and shape is checked against
// the config before a word is unpacked; errors name the tensor.
#pragma once

#include "layout.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/xq_format.h>

namespace xquant::hfq {

// Fills `out` (buffers from host.alloc); Error(XQ_ERR_NOT_FOUND) when the
// module has no qweight (stored dense). Zero points that are all at the
// midpoint 2^(b-1) read as symmetric: the dequantized weights are the same,
// and this is how a symmetric tensor written to AWQ (which always stores
// qzeros) reads back as the symmetric tensor it was.
void read_module(const sdk::Host& host, const Settings& s, const xq_tensor_source& src, const std::string& module,
                 xq_quant_tensor& out);

}  // namespace xquant::hfq
