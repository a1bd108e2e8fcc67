// device_weights.cpp: see device_weights.hpp.
#include "engine/device_weights.hpp"

#include "checkpoint/checkpoint.hpp"
#include "core/error.hpp"

#include <strings.h>

#include <string>

namespace xquant {

xq_dtype device_weights_from_name(std::string_view name, std::string_view what) {
  const std::string n(name);
  if (strcasecmp(n.c_str(), "auto") == 0) return XQ_DTYPE_INVALID;
  if (strcasecmp(n.c_str(), "bf16") == 0) return XQ_DTYPE_BF16;
  if (strcasecmp(n.c_str(), "f32") == 0) return XQ_DTYPE_F32;
  fail(XQ_ERR_INVALID_ARGUMENT, "{} must be auto, bf16 or f32, got '{}'", what, n);
}

xq_dtype stored_float_weights(const Checkpoint& checkpoint) {
  uint64_t bf16 = 0, other = 0;
  for (const TensorEntry& t : checkpoint.tensors()) {
    if (t.shape.size() != 2 || t.has_quantized) continue;
    if (t.dtype == XQ_DTYPE_BF16) bf16 += t.nbytes;
    else if (t.dtype == XQ_DTYPE_F32 || t.dtype == XQ_DTYPE_F16) other += t.nbytes;
  }
  return bf16 > other ? XQ_DTYPE_BF16 : XQ_DTYPE_F32;
}

}  // namespace xquant
