// test_runtime.hpp: what tests that drive plugins through the runtime share:
// one process-wide Runtime (plugins loaded once, errors-only logging) and an
// owned canonical quantized tensor to hand to writers and compare against
// what readers return. Include only from tests that link xquant_core.
#pragma once

#include "core/runtime.hpp"

#include <xquant/xq_tensor.h>

#include <cstdint>
#include <vector>

namespace xquant::test {

// Never destroyed: plugin libraries stay loaded until the process exits, so
// no static destructor runs after a plugin's code is gone.
inline Runtime& quiet_runtime() {
  static Runtime* rt = [] {
    RuntimeOptions o;
    o.log_level = XQ_LOG_ERROR;
    return new Runtime(o);
  }();
  return *rt;
}

// A canonical quantized tensor over vectors it owns; call bind() after
// filling (or resizing) them so the ABI struct points at their data.
struct Canon {
  xq_quant_tensor q{};
  std::vector<int8_t> codes, zps;
  std::vector<float> scales;
  std::vector<int32_t> gidx;
  void bind() {
    q.struct_size = sizeof(q);
    q.codes = codes.data();
    q.scales = scales.data();
    q.zero_points = zps.empty() ? nullptr : zps.data();
    q.g_idx = gidx.empty() ? nullptr : gidx.data();
  }
};

}  // namespace xquant::test
