// test_host.hpp: a minimal host for the cuda provider tests. It dlopens the
// built plugin (path from the XQ_CUDA_PLUGIN_PATH compile definition),
// negotiates the ABI, calls init with a small host table (log to stderr,
// malloc, per-thread last error) and exposes the kernel vtable plus device
// buffer helpers. A test harness, not a mock: every call goes to the plugin.
#pragma once

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/tensor.hpp>
#include <xquant/xq_kernel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace xqtest {

inline thread_local std::string g_last_error;

// Sets an environment variable (value null: unsets it) for its lifetime
// (the provider reads these per op), then puts back what was there.
class EnvSet {
 public:
  EnvSet(const EnvSet&) = delete;
  EnvSet& operator=(const EnvSet&) = delete;
  EnvSet(const char* name, const char* value) : name_(name) {
    if (const char* e = std::getenv(name)) had_ = true, old_ = e;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~EnvSet() {
    if (had_) ::setenv(name_, old_.c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

struct Plugin {
  void* lib = nullptr;
  const xq_plugin_descriptor* desc = nullptr;
  const xq_kernel_vtable* vt = nullptr;
  void* state = nullptr;
  xq_host_api host{};
  std::string load_error;
  uint32_t score_value = 0;
  std::string why;

  static Plugin& get() {
    static Plugin p;
    return p;
  }

  bool usable() const { return vt && score_value > 0; }

 private:
  Plugin() {
    host.struct_size = sizeof(host);
    host.abi_version = XQ_ABI_VERSION;
    host.log = [](void*, xq_log_level lvl, const char* m) {
      if (lvl >= XQ_LOG_WARN) std::fprintf(stderr, "[cuda plugin] %s\n", m);
    };
    host.alloc = [](void*, size_t n) -> void* { return std::aligned_alloc(64, (n + 63) / 64 * 64); };
    host.free = [](void*, void* p) { std::free(p); };
    host.set_error = [](void*, xq_status s, const char* m) {
      g_last_error = m ? m : "";
      return s;
    };
    host.progress = [](void*, const char*, uint64_t, uint64_t) { return XQ_OK; };
    host.kv_create = [](void*) -> xq_kv* { return nullptr; };
    host.kv_destroy = [](void*, xq_kv*) {};
    host.kv_set = [](void*, xq_kv*, const char*, const xq_value*) { return XQ_ERR_UNSUPPORTED; };
    host.kv_get = [](void*, const xq_kv*, const char*, xq_value*) { return XQ_ERR_NOT_FOUND; };
    host.kv_count = [](void*, const xq_kv*) -> uint64_t { return 0; };
    host.kv_key_at = [](void*, const xq_kv*, uint64_t) -> const char* { return nullptr; };
    host.parallel_for = [](void*, uint64_t n, uint64_t, xq_range_fn fn, void* user) { fn(user, 0, n); };
    host.num_threads = [](void*) -> uint32_t { return 1; };

    // XQ_CUDA_PLUGIN overrides the build-tree path (a build moved to another machine).
    const char* path = std::getenv("XQ_CUDA_PLUGIN");
    lib = dlopen(path && *path ? path : XQ_CUDA_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      load_error = std::string("dlopen failed: ") + dlerror();
      return;
    }
    auto entry = reinterpret_cast<xq_plugin_entry_fn>(dlsym(lib, XQ_PLUGIN_ENTRY_SYMBOL));
    if (!entry) {
      load_error = "no entry symbol";
      return;
    }
    desc = entry(XQ_ABI_VERSION_1_0, XQ_ABI_VERSION);
    if (!desc) {
      load_error = "entry returned NULL";
      return;
    }
    if (desc->init(&host, XQ_ABI_VERSION, &state) != XQ_OK) {
      load_error = "init failed: " + g_last_error;
      return;
    }
    vt = static_cast<const xq_kernel_vtable*>(desc->vtable);
    const char* w = nullptr;
    score_value = vt->score(state, &w);
    why = w ? w : "";
  }
};

#define XQ_REQUIRE_GPU()                                                              \
  do {                                                                                \
    auto& _p = ::xqtest::Plugin::get();                                               \
    ASSERT_TRUE(_p.vt) << _p.load_error;                                              \
    if (!_p.usable()) GTEST_SKIP() << "cuda provider unusable here: " << _p.why;      \
  } while (0)

#define XQ_OK_OR_FAIL(expr) ASSERT_EQ((expr), XQ_OK) << #expr << ": " << ::xqtest::g_last_error

// A device buffer owned by the test.
struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t bytes) : n(bytes) {
    auto& P = Plugin::get();
    if (P.vt->alloc(P.state, bytes, &p) != XQ_OK) p = nullptr;
  }
  ~DevBuf() {
    auto& P = Plugin::get();
    if (p) P.vt->free(P.state, p);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T>
  void put(const std::vector<T>& v) {
    auto& P = Plugin::get();
    EXPECT_EQ(P.vt->upload(P.state, p, v.data(), v.size() * sizeof(T)), XQ_OK) << g_last_error;
  }
  template <class T>
  std::vector<T> get(size_t count) {
    auto& P = Plugin::get();
    std::vector<T> v(count);
    EXPECT_EQ(P.vt->synchronize(P.state), XQ_OK) << g_last_error;
    EXPECT_EQ(P.vt->download(P.state, v.data(), p, count * sizeof(T)), XQ_OK) << g_last_error;
    return v;
  }
  void poison() {  // 0xFF bytes: NaN in f32/f16/bf16, -1 in ints
    std::vector<uint8_t> v(n, 0xFF);
    put(v);
  }
};

// `op` recorded into a graph (graph_begin, run_op, graph_end); null, with a
// test failure naming the step, when it could not be recorded.
inline xq_graph* record_op(const xq_op& op) {
  auto& P = Plugin::get();
  xq_graph* g = nullptr;
  if (P.vt->graph_begin(P.state) != XQ_OK) {
    ADD_FAILURE() << "graph_begin: " << g_last_error;
    return nullptr;
  }
  const xq_status recorded = P.vt->run_op(P.state, &op);
  const std::string record_error = g_last_error;
  if (P.vt->graph_end(P.state, &g) != XQ_OK) ADD_FAILURE() << "graph_end: " << g_last_error;
  if (recorded != XQ_OK) {
    ADD_FAILURE() << "run_op while recording: " << record_error;
    P.vt->graph_release(P.state, g);
    return nullptr;
  }
  return g;
}

inline xq_device_tensor tensor2(xq_dtype t, int64_t rows, int64_t cols, void* data) {
  return xquant::sdk::device_tensor(t, {rows, cols}, data);
}
inline xq_device_tensor tensor1(xq_dtype t, int64_t n, void* data) {
  return xquant::sdk::device_tensor(t, {n}, data);
}
using xquant::sdk::make_op;

inline std::mt19937& rng() {
  static std::mt19937 g = [] {
    const unsigned seed = std::random_device{}();
    std::fprintf(stderr, "cuda tests: random seed %u\n", seed);
    return std::mt19937(seed);
  }();
  return g;
}
inline float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng()); }
inline int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng()); }

// 16-bit activation storage for a dtype; returns the values actually stored.
inline std::vector<uint16_t> to_half_bits(const std::vector<float>& v, xq_dtype t, std::vector<float>* rounded) {
  std::vector<uint16_t> out(v.size());
  if (rounded) rounded->resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    out[i] = t == XQ_DTYPE_BF16 ? xquant::sdk::f32_to_bf16(v[i]) : xquant::sdk::f32_to_f16(v[i]);
    if (rounded) (*rounded)[i] = t == XQ_DTYPE_BF16 ? xquant::sdk::bf16_to_f32(out[i]) : xquant::sdk::f16_to_f32(out[i]);
  }
  return out;
}
inline float half_bits_to_f32(uint16_t b, xq_dtype t) {
  return t == XQ_DTYPE_BF16 ? xquant::sdk::bf16_to_f32(b) : xquant::sdk::f16_to_f32(b);
}

// ||out - ref|| / ||ref||; NaN (an unwritten poisoned element) makes it NaN.
inline double rel_error(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}
inline size_t count_nan(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += std::isnan(x) ? 1 : 0;
  return n;
}

// out[m][n] = sum_k x[m][k] * w[n][k] (+ bias[n]) in double, rows split
// over the machine's cores (the reference dominates the suite's run time).
inline std::vector<double> ref_matmul(const std::vector<float>& x, const std::vector<float>& w, int64_t M, int64_t N,
                                      int64_t K, const std::vector<float>* bias) {
  std::vector<double> y(static_cast<size_t>(M * N));
  auto rows = [&](int64_t n0, int64_t n1) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = n0; n < n1; ++n) {
        double s = 0;
        const float* xr = &x[m * K];
        const float* wr = &w[n * K];
        for (int64_t k = 0; k < K; ++k) s += static_cast<double>(xr[k]) * wr[k];
        if (bias) s += (*bias)[n];
        y[m * N + n] = s;
      }
  };
  const int64_t T = std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), N / 16));
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < T; ++t) pool.emplace_back(rows, N * t / T, N * (t + 1) / T);
  for (auto& th : pool) th.join();
  return y;
}

}  // namespace xqtest
