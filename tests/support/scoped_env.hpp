// scoped_env.hpp: an environment variable set for one scope, restored after
// (the cpu provider reads XQUANT_CPU_ISA, XQUANT_CPU_GEMV, XQUANT_CPU_PREFILL
// and friends when a weight is prepared or an op runs; child processes
// inherit what is set).
#pragma once

#include <cstdlib>
#include <string>

namespace xquant::test {

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

// Weight-only prefill with float activations (dequantized pieces + SGEMM):
// for tests that pin a format or a conversion to float-rounding exactness,
// which the default integer prefill on AVX-512 (int8 activations, the q8
// decode's numerics) would blur by design.
struct FloatPrefill : ScopedEnv {
  FloatPrefill() : ScopedEnv("XQUANT_CPU_PREFILL", "sgemm") {}
};

}  // namespace xquant::test
