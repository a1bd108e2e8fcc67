// test_cpu_moe_ops.cpp: the `cpu` provider's MOE_ROUTE and MOE_COMBINE
// (plugins/cpu/src/moe_ops.cpp) through the real plugin. MOE_ROUTE against
// the engine's own host routing (engine/moe_routing.cpp, which the engine
// tests check against transformers): ids and weights identical, on fresh
// random logits, with and without norm_topk_prob, ties to the lowest id.
// MOE_COMBINE against a double-precision reference (sorted-row indices,
// skipped slots, the sigmoid gate), within 1e-6 relative. Refusals named.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/moe_routing.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cpu_moe_ops {

namespace {

struct CpuPlugin {
  Runtime rt{RuntimeOptions{}};
  LoadedPlugin* p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu");
  xq_status run(const xq_op& op) const { return p->kernel().run_op(p->state, &op); }
};
CpuPlugin& cpu() {
  static CpuPlugin f;
  return f;
}

std::mt19937& rng() {
  static std::mt19937 g(std::random_device{}());
  return g;
}

}  // namespace

TEST(CpuMoeRoute, EqualsTheEngineHostRouting) {
  for (auto [T, E, k, norm] : {std::tuple<int64_t, int64_t, int64_t, bool>{1, 8, 2, true}, {7, 8, 2, false},
                               {37, 64, 6, true}, {300, 128, 8, true}, {5, 60, 60, false}}) {
    std::vector<float> logits(T * E);
    std::uniform_real_distribution<float> u(-4.f, 4.f);
    for (auto& v : logits) v = u(rng());
    if (T > 1) std::fill(logits.begin(), logits.begin() + E, 0.5f);  // row 0 all tied
    const MoeRouting ref = moe_route(logits.data(), T, E, k, norm);
    std::vector<int32_t> ids(T * k, -7);
    std::vector<float> w(T * k, -7.f);
    xq_op op = sdk::make_op(XQ_OP_MOE_ROUTE);
    op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {T, E}, logits.data());
    op.dst = sdk::device_tensor(XQ_DTYPE_I32, {T, k}, ids.data());
    op.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {T, k}, w.data());
    op.i[0] = norm ? 1 : 0;
    ASSERT_EQ(cpu().run(op), XQ_OK) << last_error();
    EXPECT_EQ(ids, ref.expert) << "T " << T << " E " << E << " k " << k;
    EXPECT_EQ(w, ref.weight);
    if (T > 1) {
      for (int64_t j = 0; j < k; ++j) EXPECT_EQ(ids[j], j);
    }
  }
}

TEST(CpuMoeCombine, AddsWeightedRowsInSlotOrder) {
  for (auto [T, k, N, sorted, sigmoid] : {std::tuple<int64_t, int64_t, int64_t, bool, bool>{1, 8, 256, true, false},
                                          {41, 2, 30, true, false}, {5, 4, 64, false, false}, {9, 1, 100, false, true}}) {
    const int64_t slots = T * k, R = slots + 3;
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> y(R * N), w(slots), dst(T * N);
    for (auto& v : y) v = u(rng());
    for (auto& v : w) v = 2 * u(rng());
    for (auto& v : dst) v = u(rng());
    std::vector<int32_t> where(slots);
    std::iota(where.begin(), where.end(), 0);
    std::shuffle(where.begin(), where.end(), rng());
    if (sorted) where[slots / 2] = -1;
    std::vector<double> ref(dst.begin(), dst.end());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = t * k + j, r = sorted ? where[s] : s;
        if (r < 0) continue;
        const double g = sigmoid ? 1.0 / (1.0 + std::exp(-static_cast<double>(w[s]))) : w[s];
        for (int64_t c = 0; c < N; ++c) ref[t * N + c] += g * y[r * N + c];
      }
    xq_op op = sdk::make_op(XQ_OP_MOE_COMBINE);
    op.dst = sdk::device_tensor(XQ_DTYPE_F32, {T, N}, dst.data());
    op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {R, N}, y.data());
    op.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {T, k}, w.data());
    if (sorted) op.src[2] = sdk::device_tensor(XQ_DTYPE_I32, {slots}, where.data());
    op.i[0] = sigmoid ? 1 : 0;
    ASSERT_EQ(cpu().run(op), XQ_OK) << last_error();
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) num += (dst[i] - ref[i]) * (dst[i] - ref[i]), den += ref[i] * ref[i];
    EXPECT_LE(std::sqrt(num / den), 1e-6) << "T " << T << " k " << k;
  }
}

TEST(CpuMoeOpsErrors, RefusalsNameTheOperand) {
  std::vector<float> f(256);
  std::vector<int32_t> i(256);
  xq_op op = sdk::make_op(XQ_OP_MOE_ROUTE);
  op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {4, 8}, f.data());
  op.dst = sdk::device_tensor(XQ_DTYPE_I32, {4, 9}, i.data());
  op.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {4, 9}, f.data());
  EXPECT_NE(cpu().run(op), XQ_OK);
  EXPECT_NE(last_error().find("top_k 9 exceeds the 8 experts"), std::string::npos) << last_error();
  xq_op c = sdk::make_op(XQ_OP_MOE_COMBINE);
  c.dst = sdk::device_tensor(XQ_DTYPE_F32, {4, 16}, f.data());
  c.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {4, 16}, f.data() + 64);
  c.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {4, 2}, f.data() + 128);
  EXPECT_NE(cpu().run(c), XQ_OK);
  EXPECT_NE(last_error().find("T * k rows"), std::string::npos) << last_error();
  std::vector<int32_t> where(8, 99);
  c.src[2] = sdk::device_tensor(XQ_DTYPE_I32, {8}, where.data());
  EXPECT_NE(cpu().run(c), XQ_OK);
  EXPECT_NE(last_error().find("names row 99 of 4"), std::string::npos) << last_error();
}

}  // namespace test_cpu_moe_ops
