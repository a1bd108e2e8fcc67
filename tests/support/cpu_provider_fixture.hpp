// cpu_provider_fixture.hpp: what the cpu provider's kernel tests share: the
// provider loaded once through a Runtime, and ScopedEnv (scoped_env.hpp).
// Include only from tests that link xquant_core.
#pragma once

#include "core/runtime.hpp"
#include "scoped_env.hpp"

#include <xquant/xq_kernel.h>

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

}  // namespace xquant::test
