// fuzz_main.cpp: libFuzzer's entry point for one target, chosen at build
// time with -DXQUANT_FUZZ_TARGET=<function in fuzz_targets.hpp>. A clean
// rejection (xquant::Error) is an ordinary outcome; any other exception
// escapes, terminates the process and is recorded by libFuzzer as a crash.
#include "fuzz_runtime.hpp"
#include "fuzz_targets.hpp"

#include "core/error.hpp"

// Loads the plugins before fuzzing starts, so libFuzzer registers their
// coverage counters with the executable's (it counts modules loaded by then).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)xquant::fuzz::fuzz_runtime();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    xquant::fuzz::XQUANT_FUZZ_TARGET(data, size);
  } catch (const xquant::Error&) {
  }
  return 0;
}
