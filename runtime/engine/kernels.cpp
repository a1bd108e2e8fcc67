// kernels.cpp: dispatching ops to a kernel provider plugin (kernels.hpp).
#include "engine/kernels.hpp"

#include "core/error.hpp"
#include "plugins/call.hpp"

namespace xquant {

Kernels::Kernels(LoadedPlugin& plugin) : plugin_(&plugin) {
  if (plugin.kind() != XQ_PLUGIN_KERNEL_PROVIDER)
    fail(XQ_ERR_INVALID_ARGUMENT, "plugin '{}' is not a kernel provider", plugin.name());
  if (!plugin.has_capability("memory:host"))
    fail(XQ_ERR_UNSUPPORTED,
         "kernel provider '{}' does not compute in host memory (capability memory:host); the engine keeps "
         "activations on the host",
         plugin.name());
}

xq_op Kernels::op(xq_op_type type) { return sdk::make_op(type); }

bool Kernels::supports(const xq_op& op) const { return plugin_->kernel().supports_op(plugin_->state, &op) != 0; }

void Kernels::run(const xq_op& op, const char* what) const {
  check_plugin_call(plugin_->kernel().run_op(plugin_->state, &op),
                    fmt::format("kernel provider '{}' running {}", plugin_->name(), what));
}

xq_qweight* Kernels::prepare(const xq_quant_tensor& q, const std::string& name) const {
  xq_qweight* w = nullptr;
  xq_status s = plugin_->kernel().qweight_prepare(plugin_->state, &q, &w);
  if (s == XQ_ERR_UNSUPPORTED) {
    set_last_error("");
    return nullptr;
  }
  check_plugin_call(s, fmt::format("kernel provider '{}' preparing '{}'", plugin_->name(), name));
  return w;
}

void Kernels::release(xq_qweight* w) const {
  if (w) plugin_->kernel().qweight_release(plugin_->state, w);
}

std::string Kernels::layout(const xq_qweight* w) const {
  const char* l = plugin_->kernel().qweight_layout(plugin_->state, w);
  return l ? l : "?";
}

}  // namespace xquant
