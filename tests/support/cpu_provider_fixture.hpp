// cpu_provider_fixture.hpp: what the cpu provider's kernel tests share: the
// provider loaded once through a Runtime, and an environment variable set for
// one scope (the provider reads XQUANT_CPU_ISA, XQUANT_CPU_GEMV and friends
// when a weight is prepared or an op runs). Include only from tests that
// link xquant_core.
#pragma once

#include "core/runtime.hpp"

#include <xquant/xq_kernel.h>

#include <cstdlib>
#include <string>

namespace xquant::test {

struct CpuProvider {
  Runtime rt{RuntimeOptions{}};
  LoadedPlugin* p = nullptr;
  CpuProvider() { p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"); }
  const xq_kernel_vtable& vt() const { return p->kernel(); }
  xq_status run(const xq_op& op) const { return vt().run_op(p->state, &op); }
};

inline CpuProvider& cpu_provider() {
  static CpuProvider f;
  return f;
}

// Sets an environment variable for one scope, restoring what it was.
struct ScopedEnv {
  std::string name, before;
  bool had = false;
  ScopedEnv(const char* n, const char* v) : name(n) {
    if (const char* e = std::getenv(n)) had = true, before = e;
    setenv(n, v, 1);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  // The value it had before (nested scopes), or unset.
  ~ScopedEnv() {
    if (had) setenv(name.c_str(), before.c_str(), 1);
    else unsetenv(name.c_str());
  }
};

}  // namespace xquant::test
