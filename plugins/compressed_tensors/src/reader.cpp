// reader.cpp: see reader.hpp. Every stored tensor's dtype and shape is
// checked against the scheme before a byte is unpacked, and the views are
// read through memcpy (the mmap may leave them unaligned).
#include "reader.hpp"

#include "float_quantized.hpp"
#include "module_error.hpp"
#include "packing.hpp"

#include <xquant/sdk/dtype.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/plugin.hpp>

#include <cstring>
#include <memory>
#include <optional>

namespace xquant::ct {
namespace {

struct View {
  xq_tensor_view v{};
  const unsigned char* bytes() const { return static_cast<const unsigned char*>(v.data); }
  int64_t numel() const {
    int64_t n = 1;
    for (uint32_t d = 0; d < v.ndim; ++d) n *= v.shape[d];
    return n;
  }
  std::string shape_text() const {
    std::string s = "[";
    for (uint32_t d = 0; d < v.ndim; ++d) s += (d ? ", " : "") + std::to_string(v.shape[d]);
    return s + "]";
  }
};

std::optional<View> find(const xq_tensor_source& src, const std::string& name) {
  View out;
  out.v = sdk::make_struct<xq_tensor_view>();
  xq_status s = src.find(src.ctx, name.c_str(), &out.v);
  if (s == XQ_ERR_NOT_FOUND) return std::nullopt;
  if (s != XQ_OK) throw sdk::Error(s, "cannot read stored tensor '" + name + "'");
  return out;
}

float float_at(const View& t, int64_t i) {
  uint16_t h;
  switch (t.v.dtype) {
    case XQ_DTYPE_F32: {
      float f;
      std::memcpy(&f, t.bytes() + 4 * i, 4);
      return f;
    }
    case XQ_DTYPE_F16: std::memcpy(&h, t.bytes() + 2 * i, 2); return sdk::f16_to_f32(h);
    case XQ_DTYPE_BF16: std::memcpy(&h, t.bytes() + 2 * i, 2); return sdk::bf16_to_f32(h);
    default: return 0;
  }
}

bool is_float(xq_dtype t) { return t == XQ_DTYPE_F32 || t == XQ_DTYPE_F16 || t == XQ_DTYPE_BF16; }

}  // namespace

void read_module(const sdk::Host& host, const QuantConfig& qc, const xq_tensor_source& src, const std::string& module,
                 xq_quant_tensor& out) {
  bool ignored = false;
  const Scheme* scheme = match_module(qc, module, &ignored);
  auto packed = find(src, module + ".weight_packed");
  auto weight = find(src, module + ".weight");
  auto scale = find(src, module + ".weight_scale");
  if (ignored || !scheme) {
    if (packed && !ignored) bad(module, "stored as weight_packed but no config group targets it");
    throw sdk::Error(XQ_ERR_NOT_FOUND, "module '" + module + "' is stored dense");
  }
  const bool is_packed = packed.has_value();
  const bool is_int8 = !is_packed && weight && weight->v.dtype == XQ_DTYPE_I8 && scale;
  const bool is_fp8 = !is_packed && weight && weight->v.dtype == XQ_DTYPE_F8_E4M3;
  if (!is_packed && !is_int8 && !is_fp8) {
    // Targeted but stored as floats: a dense Linear (e.g. an untargeted
    // lm_head written without an ignore entry) or an unsupported format.
    throw sdk::Error(XQ_ERR_NOT_FOUND, "module '" + module + "' is stored dense");
  }
  if (qc.has_transforms)
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module + "': the checkpoint has a transform_config "
                                         "(Hadamard/rotation), which xquant does not apply");
  if (is_fp8) {
    if (!scale) bad(module, "weight is F8_E4M3 but weight_scale is missing");
    read_float_module(host, *scheme, weight->v, scale->v, module, out);
    return;
  }
  if (!scheme->weights) bad(module, "config group '" + scheme->name + "' has no weights args");
  const Args& w = *scheme->weights;
  if (w.type != "int")
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module + "': weights of type '" + w.type + "' are not supported");
  if (w.num_bits < 2 || w.num_bits > 8)
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module + "': " + std::to_string(w.num_bits) +
                                             "-bit weights are not supported (2..8)");
  if (w.strategy != "tensor" && w.strategy != "channel" && w.strategy != "group")
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module + "': weight strategy '" + w.strategy +
                                             "' is not supported (tensor, channel, group)");
  if (w.strategy == "group" && w.group_size <= 0) bad(module, "group strategy without a positive group_size");
  if (!scale) bad(module, "weight_scale is missing");
  const uint32_t bits = w.num_bits;

  // Logical shape.
  int64_t rows = 0, cols = 0;
  if (is_packed) {
    if (packed->v.dtype != XQ_DTYPE_I32 || packed->v.ndim != 2)
      bad(module, "weight_packed must be a 2-D I32 tensor, got " + std::string(sdk::dtype_name(packed->v.dtype)) + " " +
                      packed->shape_text());
    auto shape = find(src, module + ".weight_shape");
    if (!shape) bad(module, "weight_shape is missing");
    if (shape->numel() != 2 || (shape->v.dtype != XQ_DTYPE_I64 && shape->v.dtype != XQ_DTYPE_I32))
      bad(module, "weight_shape must hold 2 integers, got " + std::string(sdk::dtype_name(shape->v.dtype)) + " " +
                      shape->shape_text());
    for (int k = 0; k < 2; ++k) {
      int64_t v;
      if (shape->v.dtype == XQ_DTYPE_I64) std::memcpy(&v, shape->bytes() + 8 * k, 8);
      else {
        int32_t v32;
        std::memcpy(&v32, shape->bytes() + 4 * k, 4);
        v = v32;
      }
      (k == 0 ? rows : cols) = v;
    }
    if (rows <= 0 || cols <= 0) bad(module, "weight_shape holds a non-positive dimension");
    int64_t words = packed_words(cols, bits, qc.legacy_packing);
    if (packed->v.shape[0] != rows || packed->v.shape[1] != words)
      bad(module, "weight_packed is " + packed->shape_text() + " but weight_shape [" + std::to_string(rows) + ", " +
                      std::to_string(cols) + "] at " + std::to_string(bits) + " bits needs [" + std::to_string(rows) +
                      ", " + std::to_string(words) + "] (" + (qc.legacy_packing ? "legacy" : "dense") +
                      " packing, version '" + qc.version + "')");
  } else {
    if (weight->v.ndim != 2) bad(module, "weight must be 2-D, got " + weight->shape_text());
    rows = weight->v.shape[0];
    cols = weight->v.shape[1];
  }

  // Scales.
  xq_strategy gran = w.strategy == "group" ? XQ_STRATEGY_GROUP : w.strategy == "channel" ? XQ_STRATEGY_CHANNEL : XQ_STRATEGY_TENSOR;
  int64_t group_size = gran == XQ_STRATEGY_GROUP ? w.group_size : cols;
  int64_t n_groups = gran == XQ_STRATEGY_GROUP ? (cols + group_size - 1) / group_size : 1;
  int64_t n_scales = gran == XQ_STRATEGY_TENSOR ? 1 : rows * n_groups;
  if (!is_float(scale->v.dtype)) bad(module, "weight_scale must be F32, F16 or BF16");
  bool scale_ok = gran == XQ_STRATEGY_TENSOR ? scale->numel() == 1
                                         : scale->v.ndim == 2 && scale->v.shape[0] == rows && scale->v.shape[1] == n_groups;
  if (!scale_ok)
    bad(module, "weight_scale is " + scale->shape_text() + ", the " + w.strategy + " strategy needs " +
                    (gran == XQ_STRATEGY_TENSOR ? std::string("[1]")
                                            : "[" + std::to_string(rows) + ", " + std::to_string(n_groups) + "]"));

  sdk::QuantTensor owner(host);  // frees the buffers on any throw before `out` takes them
  xq_quant_tensor& q = owner.get();
  q.bits = bits;
  q.symmetric = w.symmetric ? 1 : 0;
  q.strategy = gran;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group_size;
  q.n_groups = n_groups;
  q.scale_dtype = scale->v.dtype;

  q.codes = host.alloc<int8_t>(static_cast<size_t>(rows * cols));
  const int32_t qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  if (is_packed) {
    const int64_t words = packed->v.shape[1];
    for (int64_t r = 0; r < rows; ++r)
      unpack_run(packed->bytes() + 4 * r * words, 1, cols, bits, qc.legacy_packing, q.codes + r * cols, 1);
  } else {
    std::memcpy(q.codes, weight->bytes(), static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows * cols; ++i)
      if (q.codes[i] < qmin || q.codes[i] > qmax)
        bad(module, "weight code " + std::to_string(q.codes[i]) + " at element " + std::to_string(i) +
                        " is outside the " + std::to_string(bits) + "-bit range");
  }

  q.scales = host.alloc<float>(static_cast<size_t>(n_scales));
  for (int64_t i = 0; i < n_scales; ++i) q.scales[i] = float_at(*scale, i);

  if (!w.symmetric) {
    auto zp = find(src, module + ".weight_zero_point");
    if (!zp) bad(module, "asymmetric scheme but weight_zero_point is missing");
    q.zero_points = host.alloc<int8_t>(static_cast<size_t>(n_scales));
    if (zp->v.dtype == XQ_DTYPE_I32 && is_packed && gran != XQ_STRATEGY_TENSOR) {
      // Packed along dim 0: column g of [rows, G] is one run.
      int64_t words = packed_words(rows, bits, qc.legacy_packing);
      if (zp->v.ndim != 2 || zp->v.shape[0] != words || zp->v.shape[1] != n_groups)
        bad(module, "weight_zero_point is " + zp->shape_text() + ", packed along dim 0 it must be [" +
                        std::to_string(words) + ", " + std::to_string(n_groups) + "]");
      for (int64_t g = 0; g < n_groups; ++g)
        unpack_run(zp->bytes() + 4 * g, n_groups, rows, bits, qc.legacy_packing, q.zero_points + g, n_groups);
    } else if (zp->v.dtype == XQ_DTYPE_I8 && zp->numel() == n_scales) {
      std::memcpy(q.zero_points, zp->bytes(), static_cast<size_t>(n_scales));
      for (int64_t i = 0; i < n_scales; ++i)
        if (q.zero_points[i] < qmin || q.zero_points[i] > qmax)
          bad(module, "zero point " + std::to_string(q.zero_points[i]) + " is outside the " + std::to_string(bits) +
                          "-bit range");
    } else {
      bad(module, "weight_zero_point has an unexpected layout: " + std::string(sdk::dtype_name(zp->v.dtype)) + " " +
                      zp->shape_text());
    }
  } else {
    q.symmetric = 1;  // symmetric zero-point tensors (older files) are all zero; ignored
  }

  if (auto gi = find(src, module + ".weight_g_idx")) {
    if (gi->v.dtype != XQ_DTYPE_I32 || gi->numel() != cols)
      bad(module, "weight_g_idx must be I32 [" + std::to_string(cols) + "], got " +
                      std::string(sdk::dtype_name(gi->v.dtype)) + " " + gi->shape_text());
    q.g_idx = host.alloc<int32_t>(static_cast<size_t>(cols));
    std::memcpy(q.g_idx, gi->bytes(), static_cast<size_t>(cols) * 4);
    for (int64_t c = 0; c < cols; ++c)
      if (q.g_idx[c] < 0 || q.g_idx[c] >= n_groups)
        bad(module, "weight_g_idx[" + std::to_string(c) + "] = " + std::to_string(q.g_idx[c]) + " is not a group of " +
                        std::to_string(n_groups));
  }

  q.act_scheme = XQ_ACT_NONE;
  if (scheme->input_activations) {
    const Args& a = *scheme->input_activations;
    // W4AFP8: int4 symmetric weights with dynamic per-token FP8 activations.
    const bool fp8_activations = a.type == "float" && a.num_bits == 8 && a.symmetric;
    if (fp8_activations && (bits != 4 || !w.symmetric || !(a.dynamic && a.strategy == "token")))
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module +
                                               "': FP8 input activations with int weights are supported as W4AFP8 "
                                               "only (4-bit symmetric weights, dynamic per-token activations)");
    if (!fp8_activations && (a.type != "int" || a.num_bits != 8 || !a.symmetric))
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module +
                                               "': only symmetric int8 (or W4AFP8's FP8) input activations are supported");
    q.act_bits = fp8_activations ? XQ_BITS_F8_E4M3 : 8;
    if (a.dynamic && a.strategy == "token") {
      q.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
    } else if (!a.dynamic && a.strategy == "tensor") {
      q.act_scheme = XQ_ACT_STATIC_TENSOR;
      auto is = find(src, module + ".input_scale");
      if (!is || !is_float(is->v.dtype) || is->numel() != 1)
        bad(module, "static activation scheme needs a 1-element float input_scale");
      q.input_scale = float_at(*is, 0);
    } else {
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "module '" + module + "': activation strategy '" + a.strategy +
                                               (a.dynamic ? "' (dynamic)" : "' (static)") + " is not supported");
    }
  }

  out = owner.release();
}

}  // namespace xquant::ct
