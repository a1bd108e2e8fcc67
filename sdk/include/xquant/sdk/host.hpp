// host.hpp: C++ conveniences over the host API table a plugin receives.
//
// Header-only; a plugin links nothing from the runtime. `guard` turns any
// exception into its status (error.hpp's call_with_status) plus the message
// recorded with host->set_error, so no exception ever crosses the C boundary.
#pragma once

#include <xquant/sdk/error.hpp>
#include <xquant/xq_abi.h>

#include <atomic>
#include <cstdarg>
#include <exception>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace xquant::sdk {

class Host {
 public:
  Host() = default;
  explicit Host(const xq_host_api* api) : api_(api) {}
  const xq_host_api* api() const { return api_; }

  void log(xq_log_level level, const std::string& message) const { api_->log(api_->ctx, level, message.c_str()); }
  void info(const std::string& m) const { log(XQ_LOG_INFO, m); }
  void warn(const std::string& m) const { log(XQ_LOG_WARN, m); }
  void debug(const std::string& m) const { log(XQ_LOG_DEBUG, m); }

  // Host-owned allocation: for buffers handed back to the host in outputs.
  template <class T>
  T* alloc(size_t count) const {
    if (count == 0) return nullptr;
    void* p = api_->alloc(api_->ctx, count * sizeof(T));
    if (!p) throw Error(XQ_ERR_OUT_OF_MEMORY, format("host allocation of %zu bytes failed", count * sizeof(T)));
    return static_cast<T*>(p);
  }
  void free(void* p) const {
    if (p) api_->free(api_->ctx, p);
  }

  // Throws Error(XQ_ERR_CANCELLED) when the user asked to stop.
  void progress(const char* task, uint64_t done, uint64_t total) const {
    if (api_->progress(api_->ctx, task, done, total) == XQ_ERR_CANCELLED)
      throw Error(XQ_ERR_CANCELLED, std::string(task) + ": cancelled");
  }

  xq_status record(xq_status status, const char* message) const {
    return api_->set_error(api_->ctx, status, message);
  }

  // Runs fn(begin, end) over [0, n) on the host's thread pool. Exceptions
  // thrown by fn are captured and the first is rethrown on this thread.
  template <class F>
  void parallel_for(uint64_t n, uint64_t grain, F&& fn) const {
    struct Ctx {
      F* fn;
      std::exception_ptr error;
      std::atomic_flag failed = ATOMIC_FLAG_INIT;
    };
    Ctx ctx{&fn, nullptr};
    api_->parallel_for(
        api_->ctx, n, grain,
        [](void* user, uint64_t b, uint64_t e) {
          auto* c = static_cast<Ctx*>(user);
          try {
            (*c->fn)(b, e);
          } catch (...) {
            if (!c->failed.test_and_set()) c->error = std::current_exception();
          }
        },
        &ctx);
    if (ctx.error) std::rethrow_exception(ctx.error);
  }
  uint32_t num_threads() const { return api_->num_threads(api_->ctx); }

 private:
  const xq_host_api* api_ = nullptr;
};

// Read access to a host-owned xq_kv (plugin params or model config).
class KvReader {
 public:
  KvReader(const Host& host, const xq_kv* kv) : host_(host), kv_(kv) {}

  std::optional<xq_value> get(const char* key) const {
    if (!kv_) return std::nullopt;
    xq_value v{};
    if (host_.api()->kv_get(host_.api()->ctx, kv_, key, &v) != XQ_OK) return std::nullopt;
    return v;
  }
  bool has(const char* key) const { return get(key).has_value(); }

  int64_t get_int(const char* key) const { return expect(key, XQ_VALUE_INT).i; }
  double get_float(const char* key) const {
    xq_value v = require(key);
    if (v.type == XQ_VALUE_INT) return static_cast<double>(v.i);
    if (v.type != XQ_VALUE_FLOAT) type_error(key, "a number");
    return v.f;
  }
  bool get_bool(const char* key) const { return expect(key, XQ_VALUE_BOOL).i != 0; }
  std::string get_string(const char* key) const { return expect(key, XQ_VALUE_STRING).s; }

  int64_t get_int(const char* key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
  double get_float(const char* key, double fallback) const { return has(key) ? get_float(key) : fallback; }
  bool get_bool(const char* key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
  std::string get_string(const char* key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
  }

 private:
  xq_value require(const char* key) const {
    auto v = get(key);
    if (!v) throw Error(XQ_ERR_NOT_FOUND, format("missing key '%s'", key));
    return *v;
  }
  xq_value expect(const char* key, xq_value_type type) const {
    xq_value v = require(key);
    if (v.type != type) type_error(key, type == XQ_VALUE_INT ? "an integer" : type == XQ_VALUE_BOOL ? "a boolean" : "a string");
    return v;
  }
  [[noreturn]] static void type_error(const char* key, const char* what) {
    throw Error(XQ_ERR_TYPE_MISMATCH, format("key '%s' must be %s", key, what));
  }
  const Host& host_;
  const xq_kv* kv_;
};

// Write access to a host-owned xq_kv (a loader filling the model config).
class KvWriter {
 public:
  KvWriter(const Host& host, xq_kv* kv) : host_(host), kv_(kv) {}
  void set_int(const char* key, int64_t v) const {
    xq_value x{};
    x.type = XQ_VALUE_INT;
    x.i = v;
    set(key, x);
  }
  void set_bool(const char* key, bool v) const {
    xq_value x{};
    x.type = XQ_VALUE_BOOL;
    x.i = v ? 1 : 0;
    set(key, x);
  }
  void set_float(const char* key, double v) const {
    xq_value x{};
    x.type = XQ_VALUE_FLOAT;
    x.f = v;
    set(key, x);
  }
  void set_string(const char* key, const std::string& v) const {
    xq_value x{};
    x.type = XQ_VALUE_STRING;
    x.s = v.c_str();
    set(key, x);
  }
  void set_ints(const char* key, const std::vector<int64_t>& v) const {
    xq_value x{};
    x.type = XQ_VALUE_INT_ARRAY;
    x.count = v.size();
    x.ints = v.data();
    set(key, x);
  }
  void set_floats(const char* key, const std::vector<double>& v) const {
    xq_value x{};
    x.type = XQ_VALUE_FLOAT_ARRAY;
    x.count = v.size();
    x.floats = v.data();
    set(key, x);
  }
  void set_strings(const char* key, const std::vector<std::string>& v) const {
    std::vector<const char*> ptrs;
    ptrs.reserve(v.size());
    for (const auto& s : v) ptrs.push_back(s.c_str());
    xq_value x{};
    x.type = XQ_VALUE_STRING_ARRAY;
    x.count = ptrs.size();
    x.strings = ptrs.data();
    set(key, x);
  }

 private:
  void set(const char* key, const xq_value& v) const {
    xq_status s = host_.api()->kv_set(host_.api()->ctx, kv_, key, &v);
    if (s != XQ_OK) throw Error(s, format("could not set key '%s'", key));
  }
  const Host& host_;
  xq_kv* kv_;
};

// Runs `body` and converts every exception into a status + recorded message.
template <class F>
xq_status guard(const Host& host, F&& body) noexcept {
  return call_with_status([&](xq_status status, const char* message) { return host.record(status, message); },
                          std::forward<F>(body));
}

}  // namespace xquant::sdk
