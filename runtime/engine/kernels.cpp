// kernels.cpp: dispatching ops to a kernel provider plugin (kernels.hpp).
#include "engine/kernels.hpp"

#include <cstddef>

#include "engine/op_profile.hpp"

#include "core/error.hpp"
#include "plugins/call.hpp"

#include <chrono>
#include <utility>

namespace xquant {

Kernels::Kernels(LoadedPlugin& plugin) : plugin_(&plugin) {
  if (plugin.kind() != XQ_PLUGIN_KERNEL_PROVIDER)
    fail(XQ_ERR_INVALID_ARGUMENT, "plugin '{}' is not a kernel provider", plugin.name());
  host_memory_ = plugin.has_capability("memory:host");
  if (!host_memory_) {
    const char* why = nullptr;
    if (plugin.kernel().score(plugin.state, &why) == 0)
      fail(XQ_ERR_DEVICE, "kernel provider '{}' cannot run on this machine: {}", plugin.name(), why ? why : "score 0");
  }
}

void* Kernels::alloc(uint64_t nbytes, const char* what) const {
  void* p = nullptr;
  check_plugin_call(plugin_->kernel().alloc(plugin_->state, nbytes, &p),
                    fmt::format("kernel provider '{}' allocating {} bytes for {}", plugin_->name(), nbytes, what));
  return p;
}

void Kernels::free(void* p) const {
  if (p) plugin_->kernel().free(plugin_->state, p);
}

void Kernels::upload(void* dst, const void* src, uint64_t nbytes) const {
  check_plugin_call(plugin_->kernel().upload(plugin_->state, dst, src, nbytes),
                    fmt::format("kernel provider '{}' uploading {} bytes", plugin_->name(), nbytes));
}

void Kernels::download(void* dst, const void* src, uint64_t nbytes) const {
  check_plugin_call(plugin_->kernel().download(plugin_->state, dst, src, nbytes),
                    fmt::format("kernel provider '{}' downloading {} bytes", plugin_->name(), nbytes));
}

xq_op Kernels::op(xq_op_type type) { return sdk::make_op(type); }

bool Kernels::supports(const xq_op& op) const { return plugin_->kernel().supports_op(plugin_->state, &op) != 0; }

void Kernels::run(const xq_op& op, const char* what) const {
  ++ops_run_;
  const auto t0 = std::chrono::steady_clock::now();
  const xq_status s = plugin_->kernel().run_op(plugin_->state, &op);
  run_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s != XQ_OK) check_plugin_call(s, fmt::format("kernel provider '{}' running {}", plugin_->name(), what));
  if (op_profile_enabled()) {
    check_plugin_call(plugin_->kernel().synchronize(plugin_->state),
                      fmt::format("kernel provider '{}' synchronizing after {}", plugin_->name(), what));
    op_profile_add(what, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
}

xq_status Kernels::try_moe(const xq_moe_op& op, std::string* why) const {
  const xq_kernel_vtable& v = plugin_->kernel();
  if (v.struct_size < offsetof(xq_kernel_vtable, moe_qmatmul) + sizeof(v.moe_qmatmul) || !v.moe_qmatmul) {
    if (why) *why = fmt::format("kernel provider '{}' has no moe_qmatmul", plugin_->name());
    return XQ_ERR_UNSUPPORTED;
  }
  const xq_status s = v.moe_qmatmul(plugin_->state, &op);
  if (s != XQ_OK && why) {
    *why = last_error();
    set_last_error("");
  }
  return s;
}

void Kernels::run_moe(const xq_moe_op& op, const char* what) const {
  ++ops_run_;
  const auto t0 = std::chrono::steady_clock::now();
  std::string why;
  const xq_status s = try_moe(op, &why);
  run_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s != XQ_OK) fail(s, "kernel provider '{}' running {}: {}", plugin_->name(), what, why);
  if (op_profile_enabled()) {
    check_plugin_call(plugin_->kernel().synchronize(plugin_->state),
                      fmt::format("kernel provider '{}' synchronizing after {}", plugin_->name(), what));
    op_profile_add(what, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
}

bool Kernels::records_graphs() const {
  const xq_kernel_vtable& v = plugin_->kernel();
  return v.struct_size >= offsetof(xq_kernel_vtable, graph_release) + sizeof(v.graph_release) && v.graph_begin &&
         v.graph_end && v.graph_launch && v.graph_release;
}

void Kernels::graph_begin() const {
  check_plugin_call(plugin_->kernel().graph_begin(plugin_->state),
                    fmt::format("kernel provider '{}' starting a graph recording", plugin_->name()));
}

xq_graph* Kernels::graph_end(std::string* why) const {
  xq_graph* g = nullptr;
  try {
    check_plugin_call(plugin_->kernel().graph_end(plugin_->state, &g),
                      fmt::format("kernel provider '{}' ending a graph recording", plugin_->name()));
  } catch (const Error& e) {
    if (why) *why = e.what();
    return nullptr;
  }
  return g;
}

void Kernels::graph_launch(xq_graph* g) const {
  ++ops_run_;
  const auto t0 = std::chrono::steady_clock::now();
  const xq_status s = plugin_->kernel().graph_launch(plugin_->state, g);
  run_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s != XQ_OK) check_plugin_call(s, fmt::format("kernel provider '{}' launching a graph", plugin_->name()));
}

void Kernels::graph_release(xq_graph* g) const {
  if (g) plugin_->kernel().graph_release(plugin_->state, g);
}

namespace {
bool g_profile = false;
std::map<std::string, OpTime> g_profile_totals;
}  // namespace

void op_profile_enable(bool on) { g_profile = on; }
bool op_profile_enabled() { return g_profile; }
std::map<std::string, OpTime> op_profile_take() { return std::exchange(g_profile_totals, {}); }
void op_profile_add(const char* label, double seconds) {
  OpTime& t = g_profile_totals[label];
  ++t.calls;
  t.seconds += seconds;
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

xq_qweight* Kernels::prepare_blocks(const std::vector<xq_block_tensor>& parts, const std::string& name) const {
  const xq_kernel_vtable& vt = plugin_->kernel();
  if (parts.empty() || !XQ_HAS_FIELD(&vt, xq_kernel_vtable, qweight_prepare_blocks) || !vt.qweight_prepare_blocks)
    return nullptr;
  xq_qweight* w = nullptr;
  xq_status s = vt.qweight_prepare_blocks(plugin_->state, parts.data(), static_cast<uint32_t>(parts.size()), &w);
  if (s == XQ_ERR_UNSUPPORTED) {
    set_last_error("");
    return nullptr;
  }
  check_plugin_call(s, fmt::format("kernel provider '{}' preparing '{}' from foreign blocks", plugin_->name(), name));
  return w;
}

void Kernels::release(xq_qweight* w) const {
  if (w) plugin_->kernel().qweight_release(plugin_->state, w);
}

bool Kernels::borrows(const xq_qweight* w) const {
  const xq_kernel_vtable& vt = plugin_->kernel();
  if (!w || !XQ_HAS_FIELD(&vt, xq_kernel_vtable, qweight_borrows) || !vt.qweight_borrows) return true;
  return vt.qweight_borrows(plugin_->state, w) != 0;
}

std::string Kernels::layout(const xq_qweight* w) const {
  const char* l = plugin_->kernel().qweight_layout(plugin_->state, w);
  return l ? l : "?";
}

std::string Kernels::packed_layout(const xq_quant_tensor& desc) const {
  const auto& vt = plugin_->kernel();
  if (!XQ_HAS_FIELD(&vt, xq_kernel_vtable, qweight_adopt) || !vt.qweight_packed_layout || !vt.qweight_adopt) return "";
  const char* l = vt.qweight_packed_layout(plugin_->state, &desc);
  return l ? l : "";
}

xq_qweight* Kernels::adopt(const xq_quant_tensor& desc, const std::string& layout, const xq_tensor_view& bytes,
                           const std::string& name) const {
  xq_qweight* w = nullptr;
  xq_status s = plugin_->kernel().qweight_adopt(plugin_->state, &desc, layout.c_str(), bytes.data, bytes.nbytes, &w);
  if (s == XQ_ERR_UNSUPPORTED) {
    set_last_error("");
    return nullptr;
  }
  check_plugin_call(s, fmt::format("kernel provider '{}' taking the stored '{}' bytes of '{}'", plugin_->name(), layout, name));
  return w;
}

namespace {

// The parallel arrays qweight_attach and qweight_adopt_stacked take.
struct PartArrays {
  std::vector<xq_quant_tensor> descs;
  std::vector<const void*> data;
  std::vector<uint64_t> nbytes;
  explicit PartArrays(const std::vector<Kernels::StoredTensor>& parts) {
    for (const auto& p : parts) {
      descs.push_back(p.desc);
      data.push_back(p.bytes.data);
      nbytes.push_back(p.bytes.nbytes);
    }
  }
};

}  // namespace

std::string Kernels::extra_layout(const xq_qweight* w) const {
  const auto& vt = plugin_->kernel();
  if (!w || !XQ_HAS_FIELD(&vt, xq_kernel_vtable, qweight_attach) || !vt.qweight_extra_layout || !vt.qweight_attach)
    return "";
  const char* l = vt.qweight_extra_layout(plugin_->state, w);
  return l ? l : "";
}

void Kernels::attach(xq_qweight* w, const std::string& layout, const std::vector<StoredTensor>& parts,
                     const std::string& name) const {
  const PartArrays a(parts);
  const xq_status s = plugin_->kernel().qweight_attach(plugin_->state, w, layout.c_str(), a.descs.data(), a.data.data(),
                                                       a.nbytes.data(), static_cast<uint32_t>(parts.size()));
  check_plugin_call(s, fmt::format("kernel provider '{}' taking the stored '{}' copy of '{}'", plugin_->name(), layout, name));
}

bool Kernels::plans_paged_steps() const {
  const auto& vt = plugin_->kernel();
  return XQ_HAS_FIELD(&vt, xq_kernel_vtable, plan_paged_step) && vt.plan_paged_step;
}

bool Kernels::plan_paged_step(xq_paged_plan& plan) const {
  const auto t0 = std::chrono::steady_clock::now();
  const xq_status s = plugin_->kernel().plan_paged_step(plugin_->state, &plan);
  run_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  check_plugin_call(s, fmt::format("kernel provider '{}' planning a step's attention", plugin_->name()));
  return plan.taken != 0;
}

bool Kernels::adopts_stacked() const {
  const auto& vt = plugin_->kernel();
  return XQ_HAS_FIELD(&vt, xq_kernel_vtable, qweight_adopt_stacked) && vt.qweight_adopt_stacked;
}

xq_qweight* Kernels::adopt_stacked(const std::string& layout, const std::vector<StoredTensor>& parts,
                                   const std::string& name, std::string* why) const {
  if (!adopts_stacked()) {
    *why = "the provider adopts no stacked stored weights";
    return nullptr;
  }
  const PartArrays a(parts);
  xq_qweight* w = nullptr;
  const xq_status s = plugin_->kernel().qweight_adopt_stacked(plugin_->state, layout.c_str(), a.descs.data(), a.data.data(),
                                                              a.nbytes.data(), static_cast<uint32_t>(parts.size()), &w);
  if (s == XQ_ERR_UNSUPPORTED) {
    *why = last_error();
    set_last_error("");
    return nullptr;
  }
  check_plugin_call(s, fmt::format("kernel provider '{}' taking the stored '{}' bytes of '{}'", plugin_->name(), layout, name));
  return w;
}

}  // namespace xquant

namespace xquant {

bool Kernels::memory_info(xq_memory_info* out) const {
  const xq_kernel_vtable& vt = plugin_->kernel();
  if (vt.struct_size < offsetof(xq_kernel_vtable, memory_info) + sizeof(vt.memory_info) || !vt.memory_info) return false;
  *out = xq_memory_info{};
  out->struct_size = sizeof(xq_memory_info);
  return vt.memory_info(plugin_->state, out) == XQ_OK;
}

}  // namespace xquant
