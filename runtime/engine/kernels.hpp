// kernels.hpp: the engine's handle on one kernel provider plugin.
//
// Builds xq_op structs, asks supports_op before dispatching (so a provider
// that cannot run an op is reported by name, never silently mis-run), and
// turns a failing run_op into an Error carrying the provider's message.
// Memory goes through the provider too: a provider with capability
// "memory:host" (e.g. `cpu`) computes on host pointers, any other (e.g.
// `cuda`) on memory from its own alloc, filled with upload and read back
// with download (DeviceBuffer below).
#pragma once

#include "plugins/registry.hpp"

#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_kernel.h>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace xquant {

// A contiguous tensor over provider memory (host memory for host providers).
inline xq_device_tensor dtensor(xq_dtype dtype, std::initializer_list<int64_t> shape, const void* data) {
  return sdk::device_tensor(dtype, shape, data);
}
inline xq_device_tensor f32(std::initializer_list<int64_t> shape, const float* data) {
  return sdk::device_tensor(XQ_DTYPE_F32, shape, data);
}
// A [rows, cols] column slice starting at `data` of a row-major matrix with
// `ld` elements per row.
inline xq_device_tensor column_slice(xq_dtype t, int64_t rows, int64_t cols, int64_t ld, const void* data) {
  xq_device_tensor v = dtensor(t, {rows, cols}, data);
  v.strides[0] = ld;
  v.strides[1] = 1;
  return v;
}

// Where an op built only to ask supports() points its operands. Providers
// check operand alignment there (the cuda provider refuses a BF16/F16
// MATMUL operand off a 16-byte boundary), so the probe is aligned as their
// allocations are (256 bytes); a float[1] had 4-byte alignment, and whether
// BF16 weights were taken then hung on where the linker put it. Never read
// or written: supports_op looks at shapes, dtypes and addresses only.
inline float* support_probe() {
  alignas(256) static float probe[64];
  return probe;
}

class Kernels {
 public:
  explicit Kernels(LoadedPlugin& plugin);
  LoadedPlugin& plugin() const { return *plugin_; }
  std::string name() const { return plugin_->name(); }
  // True when the provider computes on host pointers ("memory:host").
  bool host_memory() const { return host_memory_; }

  static xq_op op(xq_op_type type);
  bool supports(const xq_op& op) const;
  // Runs `op`; throws naming `what` when the provider rejects or fails it.
  void run(const xq_op& op, const char* what) const;
  // Ops run so far through run() (what a step costs in launches), and the
  // host time spent inside the provider's run_op for them (validation and
  // the enqueue of its kernels: on an asynchronous device, the launch cost).
  uint64_t ops_run() const { return ops_run_; }
  double run_seconds() const { return run_seconds_; }

  // Recorded launches (xq_kernel_vtable.graph_begin..graph_release): true
  // when the provider records (its vtable has the entries). graph_end
  // returns nullptr, having stopped recording, when the provider could not
  // record (`why` gets its message); graph_launch counts as one op in
  // ops_run() and its host time in run_seconds().
  bool records_graphs() const;
  void graph_begin() const;
  xq_graph* graph_end(std::string* why) const;
  void graph_launch(xq_graph* g) const;
  void graph_release(xq_graph* g) const;

  // One mixture-of-experts Linear over all experts (xq_kernel_vtable.
  // moe_qmatmul): run_moe throws naming `what`; try_moe answers the
  // provider's status and message (XQ_ERR_UNSUPPORTED when it has no entry).
  void run_moe(const xq_moe_op& op, const char* what) const;
  xq_status try_moe(const xq_moe_op& op, std::string* why) const;
  // A step's rows, for a provider that plans its attention per step
  // (xq_kernel_vtable.plan_paged_step): whether it has the entry, and the
  // call (true when it planned kernels for these rows; throws on failure).
  // Its host time counts in run_seconds(), as a launch's does.
  bool plans_paged_steps() const;
  bool plan_paged_step(xq_paged_plan& plan) const;
  // Provider memory; every call throws with the provider's message on failure.
  void* alloc(uint64_t nbytes, const char* what) const;
  void free(void* p) const;
  void upload(void* dst, const void* src, uint64_t nbytes) const;
  void download(void* dst, const void* src, uint64_t nbytes) const;

  // nullptr when the provider does not run this scheme (the engine then
  // dequantizes on load); throws on other failures.
  xq_qweight* prepare(const xq_quant_tensor& q, const std::string& name) const;
  // The same for foreign blocks stacked by rows (nullptr also when the
  // provider predates qweight_prepare_blocks).
  xq_qweight* prepare_blocks(const std::vector<xq_block_tensor>& parts, const std::string& name) const;
  void release(xq_qweight* w) const;
  // Whether w still reads the bytes it was prepared or adopted from
  // (xq_kernel_vtable.qweight_borrows; true when the provider has no entry).
  bool borrows(const xq_qweight* w) const;
  // The provider's memory report (xq_kernel_vtable.memory_info); false when
  // the provider has none.
  bool memory_info(xq_memory_info* out) const;
  std::string layout(const xq_qweight* w) const;
  // The stored layout the provider would pack `desc` into ("" when it takes
  // none), and a qweight over bytes already in it (borrowed until release;
  // nullptr when the provider refuses the layout; throws on bad bytes).
  std::string packed_layout(const xq_quant_tensor& desc) const;
  xq_qweight* adopt(const xq_quant_tensor& desc, const std::string& layout, const xq_tensor_view& bytes,
                    const std::string& name) const;
  // A stored tensor as a checkpoint hands it over: its description (buffers
  // NULL) and a view of its bytes in one layout.
  struct StoredTensor {
    xq_quant_tensor desc;
    xq_tensor_view bytes;
  };
  // The second stored copy an adopted weight would also take ("" when none:
  // xq_kernel_vtable.qweight_extra_layout), and handing over the copies of
  // the tensors it was made of, in order (the provider keeps its own; throws
  // on bad bytes).
  std::string extra_layout(const xq_qweight* w) const;
  void attach(xq_qweight* w, const std::string& layout, const std::vector<StoredTensor>& parts,
              const std::string& name) const;
  // Several stored tensors as one weight, rows in order (qweight_adopt_stacked):
  // whether the provider has the entry, and the weight; nullptr with *why set
  // where it cannot stack them (throws on bad bytes).
  bool adopts_stacked() const;
  xq_qweight* adopt_stacked(const std::string& layout, const std::vector<StoredTensor>& parts, const std::string& name,
                            std::string* why) const;

 private:
  LoadedPlugin* plugin_;
  bool host_memory_ = false;
  mutable uint64_t ops_run_ = 0;
  mutable double run_seconds_ = 0;
};

// Memory owned through a provider's alloc/free (move-only). Empty when
// default-constructed.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const Kernels& k, uint64_t nbytes, const char* what)
      : k_(&k), p_(k.alloc(nbytes, what)), bytes_(nbytes) {}
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : k_(o.k_), p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      k_ = o.k_, p_ = o.p_, bytes_ = o.bytes_;
      o.p_ = nullptr, o.bytes_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return p_; }
  float* f32() const { return static_cast<float*>(p_); }
  uint64_t bytes() const { return bytes_; }
  explicit operator bool() const { return p_ != nullptr; }
  void reset() {
    if (p_) k_->free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }

 private:
  const Kernels* k_ = nullptr;
  void* p_ = nullptr;
  uint64_t bytes_ = 0;
};

// A provider copy of a host array (uploaded once).
template <class T>
DeviceBuffer upload_copy(const Kernels& k, const T* host, size_t count, const char* what) {
  DeviceBuffer b(k, count * sizeof(T), what);
  if (count) k.upload(b.data(), host, count * sizeof(T));
  return b;
}

}  // namespace xquant
