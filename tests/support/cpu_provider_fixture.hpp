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

// Sets an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

}  // namespace xquant::test
