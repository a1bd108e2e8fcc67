// float_quantized.cpp: see float_quantized.hpp.
#include "float_quantized.hpp"

#include "module_error.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/tensor.hpp>

#include <cmath>
#include <cstring>

namespace xquant::ct {
namespace {

std::string shape_text(const xq_tensor_view& v) {
  std::string s = "[";
  for (uint32_t d = 0; d < v.ndim; ++d) s += (d ? ", " : "") + std::to_string(v.shape[d]);
  return s + "]";
}

int64_t numel(const xq_tensor_view& v) {
  int64_t n = 1;
  for (uint32_t d = 0; d < v.ndim; ++d) n *= v.shape[d];
  return n;
}

float scale_at(const xq_tensor_view& t, int64_t i) {
  const auto* b = static_cast<const unsigned char*>(t.data);
  uint16_t h;
  float f;
  switch (t.dtype) {
    case XQ_DTYPE_F32: std::memcpy(&f, b + 4 * i, 4); return f;
    case XQ_DTYPE_F16: std::memcpy(&h, b + 2 * i, 2); return sdk::f16_to_f32(h);
    default: std::memcpy(&h, b + 2 * i, 2); return sdk::bf16_to_f32(h);
  }
}

}  // namespace

void validate_float_quantized(const xq_quant_tensor& q, const std::string& m) {
  auto fail = [&](const std::string& what) {
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "module '" + m + "': FP8 weight: " + what);
  };
  if (q.bits != XQ_BITS_F8_E4M3) fail("only FP8 E4M3 float codes are supported");
  if (q.rows <= 0 || q.cols <= 0) fail("rows and cols must be positive");
  if (!q.codes || !q.scales) fail("codes and scales are required");
  if (q.strategy != XQ_STRATEGY_CHANNEL && q.strategy != XQ_STRATEGY_TENSOR) fail("strategy must be channel or tensor");
  if (q.n_groups != 1) fail("channel/tensor strategy needs n_groups == 1");
  if (!q.symmetric || q.zero_points) fail("FP8 weights are symmetric (no zero points)");
  if (q.g_idx) fail("FP8 weights have no g_idx");
  for (int64_t i = 0; i < q.rows * q.cols; ++i)
    if ((static_cast<uint8_t>(q.codes[i]) & 0x7F) == 0x7F) fail("NaN code at element " + std::to_string(i));
  if (q.act_scheme == XQ_ACT_STATIC_TENSOR) fail("static FP8 activation scales are not supported");
  if (q.act_scheme == XQ_ACT_DYNAMIC_TOKEN && q.act_bits != XQ_BITS_F8_E4M3)
    fail("activations of FP8 weights must be FP8 (act_bits XQ_BITS_F8_E4M3)");
  if (q.act_scheme != XQ_ACT_NONE && q.act_scheme != XQ_ACT_DYNAMIC_TOKEN) fail("unknown activation scheme");
}

void read_float_module(const sdk::Host& host, const Scheme& scheme, const xq_tensor_view& weight,
                       const xq_tensor_view& scale, const std::string& module, xq_quant_tensor& out) {
  if (!scheme.weights) bad(module, "config group '" + scheme.name + "' has no weights args");
  const Args& w = *scheme.weights;
  if (w.type != "float" || w.num_bits != 8)
    bad(module, "weight is F8_E4M3 but its config group says type '" + w.type + "', " + std::to_string(w.num_bits) +
                    " bits (float-quantized needs type float, 8 bits)");
  if (w.strategy != "channel" && w.strategy != "tensor")
    unsupported(module, "FP8 weight strategy '" + w.strategy + "' is not supported (channel, tensor)");
  if (!w.symmetric) unsupported(module, "asymmetric FP8 weights are not supported");
  if (weight.ndim != 2 || weight.shape[0] <= 0 || weight.shape[1] <= 0)
    bad(module, "weight must be a non-empty 2-D F8_E4M3 tensor, got " + shape_text(weight));
  const int64_t rows = weight.shape[0], cols = weight.shape[1];
  const bool per_tensor = w.strategy == "tensor";
  if (scale.dtype != XQ_DTYPE_F32 && scale.dtype != XQ_DTYPE_F16 && scale.dtype != XQ_DTYPE_BF16)
    bad(module, std::string("weight_scale must be F32, F16 or BF16, got ") + sdk::dtype_name(scale.dtype));
  // compressed-tensors keeps channel scales as [out, 1]; a flat [out] is accepted too.
  const bool scale_ok = per_tensor ? numel(scale) == 1
                                   : (scale.ndim == 2 && scale.shape[0] == rows && scale.shape[1] == 1) ||
                                         (scale.ndim == 1 && scale.shape[0] == rows);
  if (!scale_ok)
    bad(module, "weight_scale is " + shape_text(scale) + ", the " + w.strategy + " strategy needs " +
                    (per_tensor ? std::string("[1]") : "[" + std::to_string(rows) + ", 1]"));

  sdk::QuantTensor owner(host);
  xq_quant_tensor& q = owner.get();
  q.bits = XQ_BITS_F8_E4M3;
  q.symmetric = 1;
  q.strategy = per_tensor ? XQ_STRATEGY_TENSOR : XQ_STRATEGY_CHANNEL;
  q.rows = rows;
  q.cols = cols;
  q.group_size = cols;
  q.n_groups = 1;
  q.scale_dtype = scale.dtype;
  q.codes = host.alloc<int8_t>(static_cast<size_t>(rows * cols));
  std::memcpy(q.codes, weight.data, static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i)
    if ((static_cast<uint8_t>(q.codes[i]) & 0x7F) == 0x7F)
      bad(module, "weight holds a NaN FP8 code at element " + std::to_string(i));
  const int64_t ns = per_tensor ? 1 : rows;
  q.scales = host.alloc<float>(static_cast<size_t>(ns));
  for (int64_t i = 0; i < ns; ++i) {
    q.scales[i] = scale_at(scale, i);
    if (!std::isfinite(q.scales[i])) bad(module, "weight_scale #" + std::to_string(i) + " is not finite");
  }

  q.act_scheme = XQ_ACT_NONE;
  if (scheme.input_activations) {
    const Args& a = *scheme.input_activations;
    if (a.type != "float" || a.num_bits != 8 || !a.symmetric)
      unsupported(module, "FP8 weights take symmetric FP8 (type float, 8 bits) input activations, got " + a.type + " " +
                              std::to_string(a.num_bits) + "-bit");
    if (!a.dynamic || a.strategy != "token")
      unsupported(module, "FP8 input activations '" + a.strategy + (a.dynamic ? "' (dynamic)" : "' (static)") +
                              " are not supported (dynamic per token)");
    q.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
    q.act_bits = XQ_BITS_F8_E4M3;
  }
  out = owner.release();
}

}  // namespace xquant::ct
