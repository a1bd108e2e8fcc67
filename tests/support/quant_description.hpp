// quant_description.hpp: a canonical quantized tensor's description as a
// container's loader hands it over with stored bytes (read_packed): every
// field, no buffers. Tests of qweight_adopt and qweight_attach pass it.
#pragma once

#include <xquant/xq_tensor.h>

namespace xquant::test {

inline xq_quant_tensor description_of(const xq_quant_tensor& q) {
  xq_quant_tensor d = q;
  d.codes = nullptr;
  d.scales = nullptr;
  d.zero_points = nullptr;
  d.g_idx = nullptr;
  return d;
}

}  // namespace xquant::test
