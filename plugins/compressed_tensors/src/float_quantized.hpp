// float_quantized.hpp: compressed-tensors' `float-quantized` format (the
// FloatQuantizationCompressor of compressors/naive_quantized/base.py) for
// FP8 E4M3 weights (xq_tensor.h, XQ_BITS_F8_E4M3): `weight` stored as
// F8_E4M3 [out, in], `weight_scale` in the model's float dtype, [out, 1] per
// channel or [1] per tensor, no zero point; activations, when quantized, FP8
// dynamic per token (the FP8_DYNAMIC preset of quantization/quant_scheme.py).
#pragma once

#include "scheme.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/xq_format.h>
#include <xquant/xq_tensor.h>

#include <string>

namespace xquant::ct {

// Throws Error(XQ_ERR_INVALID_ARGUMENT) naming `module` when an FP8 canonical
// tensor is not one compressed-tensors can store (strategy, zero points,
// g_idx, NaN codes, activation scheme).
void validate_float_quantized(const xq_quant_tensor& q, const std::string& module);

// Reads one float-quantized module whose `weight` is F8_E4M3 into `out`
// (buffers from host.alloc); `w` is the scheme's weight args, `scheme` the
// module's group (for input_activations). MALFORMED / UNSUPPORTED naming the
// module and the tensor on bad input.
void read_float_module(const sdk::Host& host, const Scheme& scheme, const xq_tensor_view& weight,
                       const xq_tensor_view& scale, const std::string& module, xq_quant_tensor& out);

}  // namespace xquant::ct
