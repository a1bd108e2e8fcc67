// flashinfer_plan.hpp: what the FlashInfer tests share (test_flashinfer_decode.cpp,
// test_flashinfer_prefill.cpp): whether the provider has plan_paged_step, a
// guard that drops any plan a test leaves, and the skip for builds and
// devices without FlashInfer's kernels.
#pragma once

#include "test_host.hpp"

namespace xqtest {

inline bool has_plan_entry() {
  auto& P = Plugin::get();
  return XQ_HAS_FIELD(P.vt, xq_kernel_vtable, plan_paged_step) && P.vt->plan_paged_step;
}

// No test leaves a plan behind for the tests after it in this process
// (an op of the planned shape would run on it).
struct DropPlanOnExit {
  ~DropPlanOnExit() {
    auto& P = Plugin::get();
    if (!P.usable() || !has_plan_entry()) return;
    xq_paged_plan none{};
    none.struct_size = sizeof(none);
    P.vt->plan_paged_step(P.state, &none);
  }
};

// Skips unless FlashInfer's kernels are in this build and runs on this device.
// Decode tests plan from one row (the default starts at 8 rows).
#define REQUIRE_FLASHINFER()                                                                   \
  EnvSet from_one_row("XQUANT_FLASHINFER_DECODE_MIN_ROWS", "1");                               \
  DropPlanOnExit drop_plan_on_exit;                                                            \
  do {                                                                                         \
    XQ_REQUIRE_GPU();                                                                          \
    ASSERT_TRUE(has_plan_entry()) << "the cuda provider has no plan_paged_step entry";        \
    if (!kFlashInferBuilt) GTEST_SKIP() << "built without FlashInfer's headers (scripts/fetch-flashinfer.sh)"; \
    int dev = 0, major = 0;                                                                    \
    cudaGetDevice(&dev);                                                                       \
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);                    \
    if (major != 9) GTEST_SKIP() << "FlashInfer's kernels are built for sm_90a only";            \
  } while (0)

#if XQUANT_CUDA_FLASHINFER
inline constexpr bool kFlashInferBuilt = true;
#else
inline constexpr bool kFlashInferBuilt = false;
#endif

}  // namespace xqtest
