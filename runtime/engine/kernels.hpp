// kernels.hpp: the engine's handle on one kernel provider plugin.
//
// Builds xq_op structs, asks supports_op before dispatching (so a provider
// that cannot run an op is reported by name, never silently mis-run), and
// turns a failing run_op into an Error carrying the provider's message.
// The engine keeps activations in host memory, so it runs on providers whose
// memory is host memory (capability "memory:host", e.g. `cpu`).
#pragma once

#include "plugins/registry.hpp"

#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_kernel.h>

#include <initializer_list>
#include <string>

namespace xquant {

// A contiguous F32 device tensor over host memory (sdk::device_tensor for the others).
inline xq_device_tensor f32(std::initializer_list<int64_t> shape, const float* data) {
  return sdk::device_tensor(XQ_DTYPE_F32, shape, data);
}

class Kernels {
 public:
  explicit Kernels(LoadedPlugin& plugin);
  LoadedPlugin& plugin() const { return *plugin_; }
  std::string name() const { return plugin_->name(); }

  static xq_op op(xq_op_type type);
  bool supports(const xq_op& op) const;
  // Runs `op`; throws naming `what` when the provider rejects or fails it.
  void run(const xq_op& op, const char* what) const;

  // nullptr when the provider does not run this scheme (the engine then
  // dequantizes on load); throws on other failures.
  xq_qweight* prepare(const xq_quant_tensor& q, const std::string& name) const;
  void release(xq_qweight* w) const;
  std::string layout(const xq_qweight* w) const;

 private:
  LoadedPlugin* plugin_;
};

}  // namespace xquant
