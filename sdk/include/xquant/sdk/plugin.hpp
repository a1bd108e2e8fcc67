// plugin.hpp: turns a C++ class into a plugin's C vtable.
//
// A plugin writes a class per kind (see sdk/examples/ and plugins/*) and
// gets the init/shutdown functions and the vtable from the adapters here.
// Every callback runs inside `guard`: exceptions become status codes with the
// message recorded through the host, never an exception across the boundary.
// All tables are constant-initialised (no constructors run at dlopen).
//
//   class MyAlgorithm : public xquant::sdk::PluginBase { ... };
//   constexpr xq_plugin_descriptor kDescriptor = xquant::sdk::describe<MyAlgorithm>(
//       XQ_PLUGIN_ALGORITHM, "name", "1.0.0", "what it does", caps, params,
//       &xquant::sdk::AlgorithmAdapter<MyAlgorithm>::vtable);
//   (LoaderAdapter, FormatAdapter and KernelAdapter likewise for the other kinds.)
//   XQ_SDK_ENTRY(kDescriptor)
#pragma once

#include <xquant/sdk/host.hpp>
#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_algorithm.h>
#include <xquant/xq_format.h>
#include <xquant/xq_kernel.h>
#include <xquant/xq_loader.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace xquant::sdk {

// Base of every plugin instance: holds the host table for the plugin's life.
struct PluginBase {
  explicit PluginBase(const Host& h) : host(h) {}
  virtual ~PluginBase() = default;
  Host host;
  uint32_t abi_version = XQ_ABI_VERSION;
};

template <class Impl>
struct Lifecycle {
  static xq_status init(const xq_host_api* api, uint32_t abi_version, void** out_state) noexcept {
    Host host(api);
    return guard(host, [&] {
      auto impl = std::make_unique<Impl>(host);
      impl->abi_version = abi_version;
      *out_state = impl.release();
    });
  }
  static void shutdown(void* state) noexcept { delete static_cast<Impl*>(state); }
};

template <class Impl>
constexpr xq_plugin_descriptor describe(xq_plugin_kind kind, const char* name, const char* version,
                                        const char* description, const char* const* capabilities,
                                        const xq_param_spec* params, const void* vtable) {
  return xq_plugin_descriptor{sizeof(xq_plugin_descriptor),
                              XQ_ABI_VERSION_1_0,
                              XQ_ABI_VERSION,
                              kind,
                              name,
                              version,
                              description,
                              capabilities,
                              params,
                              &Lifecycle<Impl>::init,
                              &Lifecycle<Impl>::shutdown,
                              vtable};
}

#define XQ_SDK_ENTRY(descriptor)                                                                 \
  extern "C" XQ_PLUGIN_EXPORT const xq_plugin_descriptor* xquant_plugin_entry(uint32_t host_min, \
                                                                              uint32_t host_max) { \
    if (XQ_ABI_MAJOR(host_max) != XQ_ABI_MAJOR((descriptor).abi_max) ||                          \
        host_max < (descriptor).abi_min || host_min > (descriptor).abi_max)                      \
      return nullptr;                                                                            \
    return &(descriptor);                                                                        \
  }

// ---- algorithm -------------------------------------------------------------
// Impl provides:
//   uint32_t needs(const KvReader& params);
//   void quantize(const KvReader& params, xq_layer_group& group, xq_linear_output* outs);
template <class Impl>
struct AlgorithmAdapter {
  static uint32_t needs(void* state, const xq_kv* params) noexcept {
    auto* self = static_cast<Impl*>(state);
    uint32_t bits = 0;
    (void)guard(self->host, [&] { bits = self->needs(KvReader(self->host, params)); });
    return bits;
  }
  static xq_status quantize(void* state, const xq_kv* params, xq_layer_group* group,
                            xq_linear_output* outs) noexcept {
    auto* self = static_cast<Impl*>(state);
    return guard(self->host, [&] { self->quantize(KvReader(self->host, params), *group, outs); });
  }
  static constexpr xq_algorithm_vtable vtable{sizeof(xq_algorithm_vtable), 0, &needs, &quantize};
};

// ---- loader ----------------------------------------------------------------
// Impl provides:
//   uint32_t probe(const std::string& path) noexcept-safe;
//   std::unique_ptr<Impl::Model> open(const std::string& path);
// Impl::Model derives from ModelBase and provides config(const KvWriter&),
// tensor_count(), tensor_info(i, xq_tensor_info&), read(i, dtype, dst, n),
// raw(i, xq_tensor_view&) and read_quantized(i, xq_quant_tensor&) (may throw
// Error(XQ_ERR_UNSUPPORTED)).
struct ModelBase {
  explicit ModelBase(const Host& h) : host(h) {}
  virtual ~ModelBase() = default;
  Host host;
};

template <class Impl>
struct LoaderAdapter {
  using Model = typename Impl::Model;
  static uint32_t probe(void* state, const char* path) noexcept {
    auto* self = static_cast<Impl*>(state);
    uint32_t score = 0;
    (void)guard(self->host, [&] { score = self->probe(path); });
    return score;
  }
  static xq_status open(void* state, const char* path, void** out) noexcept {
    auto* self = static_cast<Impl*>(state);
    return guard(self->host, [&] { *out = self->open(path).release(); });
  }
  static void close(void* model) noexcept { delete static_cast<Model*>(model); }
  static xq_status config(void* model, xq_kv* out) noexcept {
    auto* m = static_cast<Model*>(model);
    return guard(m->host, [&] { m->config(KvWriter(m->host, out)); });
  }
  static uint64_t tensor_count(void* model) noexcept { return static_cast<Model*>(model)->tensor_count(); }
  static xq_status tensor_info(void* model, uint64_t i, xq_tensor_info* out) noexcept {
    auto* m = static_cast<Model*>(model);
    return guard(m->host, [&] {
      auto info = make_struct<xq_tensor_info>();
      m->tensor_info(i, info);
      *out = info;
    });
  }
  static xq_status read(void* model, uint64_t i, xq_dtype dtype, void* dst, uint64_t n) noexcept {
    auto* m = static_cast<Model*>(model);
    return guard(m->host, [&] { m->read(i, dtype, dst, n); });
  }
  static xq_status raw(void* model, uint64_t i, xq_tensor_view* out) noexcept {
    auto* m = static_cast<Model*>(model);
    return guard(m->host, [&] {
      auto v = make_struct<xq_tensor_view>();
      m->raw(i, v);
      *out = v;
    });
  }
  // The buffers are freed here if read_quantized throws after allocating some.
  static xq_status read_quantized(void* model, uint64_t i, xq_quant_tensor* out) noexcept {
    auto* m = static_cast<Model*>(model);
    return guard(m->host, [&] {
      QuantTensor q(m->host);
      m->read_quantized(i, q.get());
      *out = q.release();
    });
  }
  // Optional: only models that store provider layouts (Model::read_packed) fill it.
  static xq_status read_packed(void* model, uint64_t i, const char* layout, xq_quant_tensor* desc,
                               xq_tensor_view* out) noexcept {
    auto* m = static_cast<Model*>(model);
    return guard(m->host, [&] {
      if (!layout || !desc || !out) fail(XQ_ERR_INVALID_ARGUMENT, "read_packed: NULL argument");
      if constexpr (requires(Model& mm, xq_quant_tensor& d, xq_tensor_view& v) { mm.read_packed(uint64_t{}, "", d, v); }) {
        auto d = make_struct<xq_quant_tensor>();
        auto v = make_struct<xq_tensor_view>();
        m->read_packed(i, layout, d, v);
        *desc = d;
        *out = v;
      } else {
        fail(XQ_ERR_NOT_FOUND, "this loader stores no provider layouts");
      }
    });
  }
  static constexpr xq_loader_vtable vtable{sizeof(xq_loader_vtable), 0, &probe, &open, &close, &config,
                                           &tensor_count, &tensor_info, &read, &raw, &read_quantized,
                                           &read_packed};
};

// ---- format ----------------------------------------------------------------
// Impl provides:
//   std::unique_ptr<Impl::Writer> open_writer(const xq_writer_options&);
//   uint32_t detect(const KvReader& model_config);
//   void read_module(const KvReader& config, const xq_tensor_source&, const char* module, xq_quant_tensor&);
// Impl::Writer derives from WriterBase and provides add_dense(name, view),
// add_quantized(module, q), finish() and abort() (abort must not throw), and
// optionally set_report(json) (the format stores the quantization report)
// and set_importance(module, sum_sq, n_cols, tokens) (the format weights its
// requantization by the calibration's per-column sum of x^2).
struct WriterBase {
  explicit WriterBase(const Host& h) : host(h) {}
  virtual ~WriterBase() = default;
  Host host;
};

template <class Impl>
struct FormatAdapter {
  using Writer = typename Impl::Writer;
  static xq_status writer_open(void* state, const xq_writer_options* o, void** out) noexcept {
    auto* self = static_cast<Impl*>(state);
    return guard(self->host, [&] { *out = self->open_writer(*o).release(); });
  }
  static xq_status add_dense(void* w, const char* name, const xq_tensor_view* t) noexcept {
    auto* writer = static_cast<Writer*>(w);
    return guard(writer->host, [&] { writer->add_dense(name, *t); });
  }
  static xq_status add_quantized(void* w, const char* module, const xq_quant_tensor* q) noexcept {
    auto* writer = static_cast<Writer*>(w);
    return guard(writer->host, [&] { writer->add_quantized(module, *q); });
  }
  static xq_status finish(void* w) noexcept {
    std::unique_ptr<Writer> writer(static_cast<Writer*>(w));
    xq_status s = guard(writer->host, [&] { writer->finish(); });
    if (s != XQ_OK) writer->abort();
    return s;
  }
  static void abort(void* w) noexcept {
    std::unique_ptr<Writer> writer(static_cast<Writer*>(w));
    if (writer) writer->abort();
  }
  static xq_status set_report(void* w, const char* json) noexcept {
    auto* writer = static_cast<Writer*>(w);
    return guard(writer->host, [&] { writer->set_report(json ? json : ""); });
  }
  // NULL for a Writer without set_report (the host then skips the call).
  static constexpr xq_status (*set_report_entry())(void*, const char*) {
    if constexpr (requires(Writer& w) { w.set_report(""); }) return &set_report;
    else return nullptr;
  }
  static xq_status set_importance(void* w, const char* module, const float* sum_sq, int64_t n_cols,
                                  uint64_t tokens) noexcept {
    auto* writer = static_cast<Writer*>(w);
    return guard(writer->host, [&] { writer->set_importance(module, sum_sq, n_cols, tokens); });
  }
  // NULL for a Writer without set_importance (the host then skips the call).
  static constexpr xq_status (*set_importance_entry())(void*, const char*, const float*, int64_t, uint64_t) {
    if constexpr (requires(Writer& w) { w.set_importance("", nullptr, int64_t(0), uint64_t(0)); })
      return &set_importance;
    else return nullptr;
  }
  static uint32_t detect(void* state, const xq_kv* config) noexcept {
    auto* self = static_cast<Impl*>(state);
    uint32_t score = 0;
    (void)guard(self->host, [&] { score = self->detect(KvReader(self->host, config)); });
    return score;
  }
  static xq_status read_module(void* state, const xq_kv* config, const xq_tensor_source* src, const char* module,
                               xq_quant_tensor* out) noexcept {
    auto* self = static_cast<Impl*>(state);
    return guard(self->host, [&] {
      QuantTensor q(self->host);
      self->read_module(KvReader(self->host, config), *src, module, q.get());
      *out = q.release();
    });
  }
  static constexpr xq_format_vtable vtable{sizeof(xq_format_vtable), 0, &writer_open, &add_dense, &add_quantized,
                                           &finish, &abort, &detect, &read_module,
                                           set_report_entry(), set_importance_entry()};
};

// Stored tensors handed to a provider together (qweight_attach,
// qweight_adopt_stacked): each part's description (buffers NULL) and its
// bytes, borrowed for the call.
struct StoredPart {
  const xq_quant_tensor* desc;
  const void* data;
  uint64_t nbytes;
};
using StoredParts = std::vector<StoredPart>;

inline StoredParts stored_parts(const char* entry, const xq_quant_tensor* descs, const void* const* data,
                                const uint64_t* nbytes, uint32_t n) {
  if (n == 0 || !descs || !data || !nbytes) fail(XQ_ERR_INVALID_ARGUMENT, std::string(entry) + ": no parts, or NULL arrays");
  StoredParts parts;
  for (uint32_t i = 0; i < n; ++i) {
    if (nbytes[i] && !data[i])
      fail(XQ_ERR_INVALID_ARGUMENT, std::string(entry) + ": part " + std::to_string(i) + " has bytes but no data");
    parts.push_back({&descs[i], data[i], nbytes[i]});
  }
  return parts;
}

// ---- kernel provider ---------------------------------------------------------
// Impl provides (the C contract of each is in xq_kernel.h):
//   uint32_t score(const char** why);               // 0 = unusable here
//   void* alloc(uint64_t nbytes);  void free(void* p);   // free must not throw
//   void upload(void* dst, const void* src, uint64_t n);
//   void download(void* dst, const void* src, uint64_t n);
//   void synchronize();
//   bool supports(const xq_op& op);                 // may throw: counts as "no"
//   void run(const xq_op& op);
//   xq_qweight* prepare(const xq_quant_tensor& q);
//   void release(xq_qweight* w);                    // accepts NULL, must not throw
//   const char* layout(const xq_qweight* w);        // a static string
//   void memory_info(xq_memory_info& out);           // optional
// Entries that return no status (score, supports_op, free, qweight_release,
// qweight_layout) answer "no" / do nothing when the Impl throws, as the ABI
// says they never fail; NULL pointers the ABI forbids are refused with
// XQ_ERR_INVALID_ARGUMENT before the Impl sees them.
template <class Impl>
struct KernelAdapter {
  static Impl* self(void* state) noexcept { return static_cast<Impl*>(state); }
  static uint32_t score(void* state, const char** why) noexcept {
    if (why) *why = "no provider state";
    uint32_t s = 0;
    if (state) (void)call_with_status(ignore_message, [&] { s = self(state)->score(why); });
    return s;
  }
  static xq_status alloc(void* state, uint64_t nbytes, void** out) noexcept {
    return guard(self(state)->host, [&] {
      if (!out) fail(XQ_ERR_INVALID_ARGUMENT, "alloc: out is NULL");
      *out = self(state)->alloc(nbytes);
    });
  }
  static void free(void* state, void* p) noexcept {
    (void)call_with_status(ignore_message, [&] { self(state)->free(p); });
  }
  static xq_status upload(void* state, void* dst, const void* src, uint64_t n) noexcept {
    return guard(self(state)->host, [&] {
      if (n && (!dst || !src)) fail(XQ_ERR_INVALID_ARGUMENT, "upload: NULL pointer");
      self(state)->upload(dst, src, n);
    });
  }
  static xq_status download(void* state, void* dst, const void* src, uint64_t n) noexcept {
    return guard(self(state)->host, [&] {
      if (n && (!dst || !src)) fail(XQ_ERR_INVALID_ARGUMENT, "download: NULL pointer");
      self(state)->download(dst, src, n);
    });
  }
  static xq_status synchronize(void* state) noexcept {
    return guard(self(state)->host, [&] { self(state)->synchronize(); });
  }
  static uint32_t supports_op(void* state, const xq_op* op) noexcept {
    bool yes = false;
    if (op) (void)call_with_status(ignore_message, [&] { yes = self(state)->supports(*op); });
    return yes ? 1u : 0u;
  }
  static xq_status run_op(void* state, const xq_op* op) noexcept {
    return guard(self(state)->host, [&] {
      if (!op) fail(XQ_ERR_INVALID_ARGUMENT, "run_op: op is NULL");
      self(state)->run(*op);
    });
  }
  static xq_status qweight_prepare(void* state, const xq_quant_tensor* q, xq_qweight** out) noexcept {
    return guard(self(state)->host, [&] {
      if (!q || !out) fail(XQ_ERR_INVALID_ARGUMENT, "qweight_prepare: NULL argument");
      *out = self(state)->prepare(*q);
    });
  }
  static void qweight_release(void* state, xq_qweight* w) noexcept {
    if (w) (void)call_with_status(ignore_message, [&] { self(state)->release(w); });
  }
  static const char* qweight_layout(void* state, const xq_qweight* w) noexcept {
    const char* name = "";
    (void)call_with_status(ignore_message, [&] { name = self(state)->layout(w); });
    return name ? name : "";
  }
  // Optional: providers that take stored packed weights define
  //   const char* packed_layout(const xq_quant_tensor& desc);  // nullptr: none
  //   xq_qweight* adopt(const xq_quant_tensor& desc, const char* layout, const void* data, uint64_t nbytes);
  static constexpr bool kAdopts = requires(Impl& i, const xq_quant_tensor& q) {
    i.packed_layout(q);
    i.adopt(q, "", static_cast<const void*>(nullptr), uint64_t{0});
  };
  static const char* qweight_packed_layout(void* state, const xq_quant_tensor* q) noexcept {
    const char* name = nullptr;
    if constexpr (kAdopts)
      if (q) (void)call_with_status(ignore_message, [&] { name = self(state)->packed_layout(*q); });
    return name;
  }
  static xq_status qweight_adopt(void* state, const xq_quant_tensor* desc, const char* layout, const void* data,
                                 uint64_t nbytes, xq_qweight** out) noexcept {
    return guard(self(state)->host, [&] {
      if (!desc || !layout || !out || (nbytes && !data)) fail(XQ_ERR_INVALID_ARGUMENT, "qweight_adopt: NULL argument");
      if constexpr (kAdopts) *out = self(state)->adopt(*desc, layout, data, nbytes);
      else fail(XQ_ERR_UNSUPPORTED, "this provider takes no stored packed layouts");
    });
  }
  // Optional in the Impl: `void memory_info(xq_memory_info& out)`.
  static xq_status memory_info(void* state, xq_memory_info* out) noexcept {
    return guard(self(state)->host, [&] {
      if (!out) fail(XQ_ERR_INVALID_ARGUMENT, "memory_info: out is NULL");
      if constexpr (requires(Impl& i, xq_memory_info& m) { i.memory_info(m); }) {
        self(state)->memory_info(*out);
      } else {
        fail(XQ_ERR_UNSUPPORTED, "memory_info: this provider does not report its memory");
      }
    });
  }
  // Providers that run foreign blocks define
  //   xq_qweight* prepare_blocks(const xq_block_tensor* parts, uint32_t n) const;
  // for the others the entry answers XQ_ERR_UNSUPPORTED.
  static xq_status qweight_prepare_blocks(void* state, const xq_block_tensor* parts, uint32_t n,
                                          xq_qweight** out) noexcept {
    if constexpr (requires(const Impl& i) { i.prepare_blocks(parts, n); }) {
      return guard(self(state)->host, [&] {
        if (!parts || n == 0 || !out) fail(XQ_ERR_INVALID_ARGUMENT, "qweight_prepare_blocks: no parts or NULL out");
        *out = self(state)->prepare_blocks(parts, n);
      });
    } else {
      return XQ_ERR_UNSUPPORTED;
    }
  }
  // Optional: providers that record launches (xq_kernel_vtable.graph_begin) define
  //   void graph_begin(); xq_graph* graph_end(); void graph_launch(xq_graph*); void graph_release(xq_graph*);
  // the others get NULL entries.
  static constexpr bool kGraphs = requires(Impl& i, xq_graph* g) {
    i.graph_begin();
    { i.graph_end() } -> std::same_as<xq_graph*>;
    i.graph_launch(g);
    i.graph_release(g);
  };
  static xq_status graph_begin(void* state) noexcept {
    return guard(self(state)->host, [&] {
      if constexpr (kGraphs) self(state)->graph_begin();
    });
  }
  static xq_status graph_end(void* state, xq_graph** out) noexcept {
    if (out) *out = nullptr;
    return guard(self(state)->host, [&] {
      if (!out) fail(XQ_ERR_INVALID_ARGUMENT, "graph_end: out is NULL");
      if constexpr (kGraphs) *out = self(state)->graph_end();
    });
  }
  static xq_status graph_launch(void* state, xq_graph* g) noexcept {
    return guard(self(state)->host, [&] {
      if (!g) fail(XQ_ERR_INVALID_ARGUMENT, "graph_launch: graph is NULL");
      if constexpr (kGraphs) self(state)->graph_launch(g);
    });
  }
  static void graph_release(void* state, xq_graph* g) noexcept {
    if constexpr (kGraphs)
      if (g) (void)call_with_status(ignore_message, [&] { self(state)->graph_release(g); });
  }
  // Providers that run a mixture-of-experts Linear in one call define
  //   void moe_qmatmul(const xq_moe_op& op);
  // for the others the entry answers XQ_ERR_UNSUPPORTED.
  static xq_status moe_qmatmul(void* state, const xq_moe_op* op) noexcept {
    if constexpr (requires(Impl& i, const xq_moe_op& o) { i.moe_qmatmul(o); }) {
      return guard(self(state)->host, [&] {
        if (!op || op->struct_size < offsetof(xq_moe_op, dense_experts) ||
            (op->n_experts && !op->experts && !(XQ_HAS_FIELD(op, xq_moe_op, dense_experts) && op->dense_experts)))
          fail(XQ_ERR_INVALID_ARGUMENT, "moe_qmatmul: NULL op, short struct_size or NULL experts");
        self(state)->moe_qmatmul(*op);
      });
    } else {
      return XQ_ERR_UNSUPPORTED;
    }
  }
  // Providers whose weights may stop reading their caller's bytes define
  //   bool borrows(const xq_qweight* w) const;
  // for the others the entry answers 1 (the caller keeps the bytes).
  static uint32_t qweight_borrows(void* state, const xq_qweight* w) noexcept {
    if constexpr (requires(const Impl& i) { i.borrows(w); }) {
      if (!w) return 1;
      uint32_t r = 1;
      (void)call_with_status(ignore_message, [&] { r = self(state)->borrows(w) ? 1u : 0u; });
      return r;
    } else {
      return 1;
    }
  }
  // Providers that take a second stored copy of an adopted weight define
  //   const char* extra_layout(const xq_qweight* w) const;  // nullptr: none
  //   void attach(xq_qweight* w, const char* layout, const StoredParts& parts);
  // and providers that adopt several stored tensors as one weight
  //   xq_qweight* adopt_stacked(const char* layout, const StoredParts& parts);
  // the others get NULL entries.
  static constexpr bool kAttaches = requires(Impl& i, const Impl& ci, xq_qweight* w, const StoredParts& p) {
    ci.extra_layout(w);
    i.attach(w, "", p);
  };
  static constexpr bool kAdoptsStacked = requires(Impl& i, const StoredParts& p) {
    { i.adopt_stacked("", p) } -> std::same_as<xq_qweight*>;
  };
  static const char* qweight_extra_layout(void* state, const xq_qweight* w) noexcept {
    const char* name = nullptr;
    if constexpr (kAttaches)
      if (w) (void)call_with_status(ignore_message, [&] { name = self(state)->extra_layout(w); });
    return name;
  }
  static xq_status qweight_attach(void* state, xq_qweight* w, const char* layout, const xq_quant_tensor* descs,
                                  const void* const* data, const uint64_t* nbytes, uint32_t n) noexcept {
    return guard(self(state)->host, [&] {
      if (!w || !layout) fail(XQ_ERR_INVALID_ARGUMENT, "qweight_attach: NULL weight or layout");
      const StoredParts parts = stored_parts("qweight_attach", descs, data, nbytes, n);
      if constexpr (kAttaches) self(state)->attach(w, layout, parts);
      else fail(XQ_ERR_UNSUPPORTED, "this provider takes no second stored copy");
    });
  }
  static xq_status qweight_adopt_stacked(void* state, const char* layout, const xq_quant_tensor* descs,
                                         const void* const* data, const uint64_t* nbytes, uint32_t n,
                                         xq_qweight** out) noexcept {
    if (out) *out = nullptr;
    return guard(self(state)->host, [&] {
      if (!layout || !out) fail(XQ_ERR_INVALID_ARGUMENT, "qweight_adopt_stacked: NULL layout or out");
      const StoredParts parts = stored_parts("qweight_adopt_stacked", descs, data, nbytes, n);
      if constexpr (kAdoptsStacked) *out = self(state)->adopt_stacked(layout, parts);
      else fail(XQ_ERR_UNSUPPORTED, "this provider adopts no stacked stored weights");
    });
  }
  // Providers that plan attention per step define
  //   void plan_paged(xq_paged_plan& plan);  // sets plan.taken
  // the others get a NULL entry. The provider sees the whole current struct:
  // a caller built before the seqs fields were appended (struct_size 72)
  // gets them zeroed.
  static constexpr bool kPlansPaged = requires(Impl& i, xq_paged_plan& p) { i.plan_paged(p); };
  static constexpr uint32_t kFirstPagedPlanSize = offsetof(xq_paged_plan, seqs);
  static xq_status plan_paged_step(void* state, xq_paged_plan* plan) noexcept {
    return guard(self(state)->host, [&] {
      if (!plan || plan->struct_size < kFirstPagedPlanSize)
        fail(XQ_ERR_INVALID_ARGUMENT, "plan_paged_step: NULL plan or short struct_size");
      xq_paged_plan p{};
      std::memcpy(&p, plan, std::min<size_t>(plan->struct_size, sizeof(p)));
      p.struct_size = sizeof(p);
      p.taken = 0;  // an out field: 0 unless the provider plans
      const bool shape_ok = p.heads > 0 && p.kv_heads > 0 && p.head_dim > 0 && p.table_ld > 0 && p.block_size > 0;
      if (p.rows < 0 || (p.rows > 0 && (!p.kv_lens || !shape_ok)))
        fail(XQ_ERR_INVALID_ARGUMENT,
             "plan_paged_step: negative rows, or rows without kv_lens or with a non-positive table_ld, "
             "block_size, heads, kv_heads or head_dim");
      if (p.seqs < 0 || (p.seqs > 0 && (p.rows > 0 || !p.seq_rows || !p.seq_kv_lens || !shape_ok)))
        fail(XQ_ERR_INVALID_ARGUMENT,
             "plan_paged_step: negative seqs, or seqs with rows > 0, without seq_rows or seq_kv_lens, or with a "
             "non-positive table_ld, block_size, heads, kv_heads or head_dim");
      for (int64_t s = 0; s < p.seqs; ++s)
        if (p.seq_rows[s] < 1 || p.seq_kv_lens[s] < p.seq_rows[s])
          fail(XQ_ERR_INVALID_ARGUMENT, "plan_paged_step: sequence " + std::to_string(s) + " has " +
                                            std::to_string(p.seq_rows[s]) + " rows and " +
                                            std::to_string(p.seq_kv_lens[s]) +
                                            " keys (at least 1 row, at least as many keys as rows)");
      plan->taken = 0;
      if constexpr (kPlansPaged) {
        self(state)->plan_paged(p);
        plan->taken = p.taken;
      }
    });
  }
  static constexpr xq_kernel_vtable vtable{sizeof(xq_kernel_vtable), 0, &score, &alloc, &free, &upload, &download,
                                           &synchronize, &supports_op, &run_op, &qweight_prepare, &qweight_release,
                                           &qweight_layout, &qweight_packed_layout, &qweight_adopt, &memory_info,
                                           &qweight_prepare_blocks,
                                           kGraphs ? &graph_begin : nullptr,
                                           kGraphs ? &graph_end : nullptr,
                                           kGraphs ? &graph_launch : nullptr,
                                           kGraphs ? &graph_release : nullptr,
                                           &moe_qmatmul, &qweight_borrows,
                                           kAttaches ? &qweight_extra_layout : nullptr,
                                           kAttaches ? &qweight_attach : nullptr,
                                           kAdoptsStacked ? &qweight_adopt_stacked : nullptr,
                                           kPlansPaged ? &plan_paged_step : nullptr};
};

}  // namespace xquant::sdk
