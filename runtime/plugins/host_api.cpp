// host_api.cpp: the xq_host_api table each plugin receives. `ctx` is the
// plugin's LoadedPlugin record, so log lines and errors name the plugin.
#include "core/error.hpp"
#include "core/kv.hpp"
#include "core/linalg.hpp"
#include "core/log.hpp"
#include "core/memory.hpp"
#include "core/progress.hpp"
#include "core/thread_pool.hpp"
#include "plugins/registry.hpp"

namespace xquant {

namespace {

LoadedPlugin& self(void* ctx) { return *static_cast<LoadedPlugin*>(ctx); }

void host_log(void* ctx, xq_log_level level, const char* message) {
  logger().log(to_spdlog(level), "[{}] {}", self(ctx).name(), message ? message : "");
}
void* host_alloc_fn(void*, size_t nbytes) { return host_alloc(nbytes); }
void host_free_fn(void*, void* p) { host_free(p); }

xq_status host_set_error(void* ctx, xq_status status, const char* message) {
  // The message is named after the plugin, once: the cuda provider's own
  // messages already begin "cuda: " (sdk/cuda_layout.hpp's unsupported()).
  const std::string name = self(ctx).name();
  const std::string text = message ? message : status_name(status);
  set_last_error(text.starts_with(name + ": ") ? text : fmt::format("{}: {}", name, text));
  return status;
}

// Runs the body of a host function a plugin called; what it throws becomes
// a status and the plugin's recorded message (sdk::call_with_status).
template <class F>
xq_status host_call(void* ctx, F&& body) noexcept {
  return sdk::call_with_status([ctx](xq_status s, const char* m) { return host_set_error(ctx, s, m); },
                               std::forward<F>(body));
}

xq_status host_progress(void* ctx, const char* task, uint64_t done, uint64_t total) {
  try {  // report throws Error(XQ_ERR_CANCELLED) after a Ctrl-C; nothing may unwind into the plugin
    Progress::report(fmt::format("{}: {}", self(ctx).name(), task ? task : ""), done, total);
  } catch (const Error& e) {
    return host_set_error(ctx, e.status(), e.what());
  } catch (const std::exception& e) {
    return host_set_error(ctx, XQ_ERR_INTERNAL, e.what());
  }
  return XQ_OK;
}

xq_kv* host_kv_create(void*) { return new (std::nothrow) xq_kv(); }
void host_kv_destroy(void*, xq_kv* kv) { delete kv; }

xq_status host_kv_set(void* ctx, xq_kv* kv, const char* key, const xq_value* value) {
  if (!kv || !key || !value) return host_set_error(ctx, XQ_ERR_INVALID_ARGUMENT, "kv_set: null argument");
  return host_call(ctx, [&] { kv->set(key, KvValue::from_view(*value)); });
}

xq_status host_kv_get(void*, const xq_kv* kv, const char* key, xq_value* out) {
  if (!kv || !key || !out) return XQ_ERR_INVALID_ARGUMENT;
  const KvValue* v = kv->find(key);
  if (!v) return XQ_ERR_NOT_FOUND;
  *out = v->view();
  return XQ_OK;
}

uint64_t host_kv_count(void*, const xq_kv* kv) { return kv ? kv->values.size() : 0; }

const char* host_kv_key_at(void*, const xq_kv* kv, uint64_t index) {
  if (!kv || index >= kv->values.size()) return nullptr;
  auto it = kv->values.begin();
  std::advance(it, static_cast<long>(index));
  return it->first.c_str();
}

void host_parallel_for(void* ctx, uint64_t n, uint64_t grain, xq_range_fn fn, void* user) {
  self(ctx).pool->parallel_for(n, grain, [&](uint64_t b, uint64_t e) { fn(user, b, e); });
}

uint32_t host_num_threads(void* ctx) { return self(ctx).pool->size(); }

xq_status host_sgemm(void* ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                     int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  return host_call(ctx, [&] { linalg::sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
}
xq_status host_ssyrk(void* ctx, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c,
                     int64_t ldc) {
  return host_call(ctx, [&] { linalg::ssyrk(n, k, alpha, a, lda, beta, c, ldc); });
}
xq_status host_spotrf(void* ctx, int upper, int64_t n, float* a, int64_t lda) {
  return host_call(ctx, [&] { linalg::spotrf(upper, n, a, lda); });
}
xq_status host_spotri(void* ctx, int upper, int64_t n, float* a, int64_t lda) {
  return host_call(ctx, [&] { linalg::spotri(upper, n, a, lda); });
}
xq_status host_strsm(void* ctx, int left, int upper, int trans, int64_t m, int64_t n, const float* t, int64_t ldt,
                     float* b, int64_t ldb) {
  return host_call(ctx, [&] { linalg::strsm(left, upper, trans, m, n, t, ldt, b, ldb); });
}

}  // namespace

void init_host_api(LoadedPlugin& plugin) {
  xq_host_api& h = plugin.host;
  h = xq_host_api{};
  h.struct_size = sizeof(xq_host_api);
  h.abi_version = plugin.abi_version;
  h.ctx = &plugin;
  h.log = host_log;
  h.alloc = host_alloc_fn;
  h.free = host_free_fn;
  h.set_error = host_set_error;
  h.progress = host_progress;
  h.kv_create = host_kv_create;
  h.kv_destroy = host_kv_destroy;
  h.kv_set = host_kv_set;
  h.kv_get = host_kv_get;
  h.kv_count = host_kv_count;
  h.kv_key_at = host_kv_key_at;
  h.parallel_for = host_parallel_for;
  h.num_threads = host_num_threads;
  h.sgemm = host_sgemm;
  h.ssyrk = host_ssyrk;
  h.spotrf = host_spotrf;
  h.spotri = host_spotri;
  h.strsm = host_strsm;
}

}  // namespace xquant
