// test_cpu_moe.cpp: the `cpu` provider's moe_qmatmul (expert by expert,
// plugins/cpu/src/moe_qmatmul.cpp) through the real plugin, on fresh random
// int4 experts and routing, against a double-precision reference written
// here: odd token counts, experts no token chooses, both activation forms,
// with and without the weighted combine, ids outside [0, E), and refusals.
// Bound: ||out-ref||/||ref|| <= 1e-2 (the decode GEMV quantizes activations
// per 32-column block to int8; measured errors are ~1e-3). W4AFP8 experts
// must take their per-token E4M3 activations through the same entry.
#include "../support/e4m3_reference.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cpu_moe {

namespace {

struct CpuPlugin {
  Runtime rt{RuntimeOptions{}};
  LoadedPlugin* p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu");
  const xq_kernel_vtable& vt() const { return p->kernel(); }
  void* state() const { return p->state; }
};
CpuPlugin& cpu() {
  static CpuPlugin f;
  return f;
}

std::mt19937& rng() {
  static std::mt19937 g(std::random_device{}());
  return g;
}

struct Expert {
  std::vector<int8_t> codes;
  std::vector<float> scales, dense;
  xq_quant_tensor q = sdk::make_struct<xq_quant_tensor>();
  Expert(int64_t N, int64_t K, int64_t gs) {
    const int64_t G = K / gs;
    std::uniform_int_distribution<int> c(-8, 7);
    std::uniform_real_distribution<float> s(0.002f, 0.02f);
    codes.resize(N * K);
    for (auto& v : codes) v = static_cast<int8_t>(c(rng()));
    scales.resize(N * G);
    for (auto& v : scales) v = s(rng());
    dense.resize(N * K);
    for (int64_t i = 0; i < N * K; ++i) dense[i] = codes[i] * scales[(i / K) * G + (i % K) / gs];
    q.bits = 4;
    q.symmetric = 1;
    q.strategy = XQ_STRATEGY_GROUP;
    q.rows = N;
    q.cols = K;
    q.group_size = gs;
    q.n_groups = G;
    q.codes = codes.data();
    q.scales = scales.data();
    q.scale_dtype = XQ_DTYPE_F32;
    q.act_scheme = XQ_ACT_NONE;
  }
};

double rel_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

// The moe_qmatmul operands: x [x_rows, K], expert_ids [T, k], optional
// router weights [T, k] (null: no combine), dst [dst_rows, N], all F32 / I32.
xq_moe_op moe_op(int E, int k, xq_qweight** experts, float* x, int64_t x_rows, int64_t K, int32_t* ids, int64_t T,
                 float* weights, float* dst, int64_t dst_rows, int64_t N) {
  xq_moe_op op = sdk::make_struct<xq_moe_op>();
  op.n_experts = E;
  op.top_k = k;
  op.experts = experts;
  op.x = sdk::device_tensor(XQ_DTYPE_F32, {x_rows, K}, x);
  op.expert_ids = sdk::device_tensor(XQ_DTYPE_I32, {T, k}, ids);
  if (weights) op.weights = sdk::device_tensor(XQ_DTYPE_F32, {T, k}, weights);
  op.dst = sdk::device_tensor(XQ_DTYPE_F32, {dst_rows, N}, dst);
  return op;
}

TEST(CpuMoe, MatchesPerExpertReference) {
  auto& P = cpu();
  ASSERT_NE(P.p, nullptr);
  ASSERT_GE(P.vt().struct_size, offsetof(xq_kernel_vtable, moe_qmatmul) + sizeof(void*));
  ASSERT_NE(P.vt().moe_qmatmul, nullptr);
  const int E = 8, k = 2, idle = 3;
  const int64_t N = 96, K = 128;
  std::vector<Expert> experts;
  std::vector<xq_qweight*> qws(E);
  experts.reserve(E);
  for (int e = 0; e < E; ++e) {
    experts.emplace_back(N, K, 32);
    ASSERT_EQ(P.vt().qweight_prepare(P.state(), &experts[e].q, &qws[e]), XQ_OK);
  }
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t T : {1, 7, 33}) {
    const int64_t S = T * k;
    std::vector<int32_t> ids(S);
    std::vector<float> wts(S);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int> pick(E - idle);  // experts E-idle.. receive nothing
      for (int e = 0; e < E - idle; ++e) pick[e] = e;
      std::shuffle(pick.begin(), pick.end(), rng());
      for (int j = 0; j < k; ++j) ids[t * k + j] = pick[j], wts[t * k + j] = 0.25f + 0.5f * (u(rng()) + 1.f) / 2;
    }
    if (T > 1) ids[1] = -1;  // a slot routed nowhere adds nothing
    for (bool per_slot_x : {false, true})
      for (bool combine : {false, true}) {
        const int64_t xr = per_slot_x ? S : T, yr = combine ? T : S;
        std::vector<float> x(xr * K), y(yr * N, NAN);
        for (auto& v : x) v = u(rng());
        xq_moe_op op = moe_op(E, k, qws.data(), x.data(), xr, K, ids.data(), T, combine ? wts.data() : nullptr,
                              y.data(), yr, N);
        ASSERT_EQ(P.vt().moe_qmatmul(P.state(), &op), XQ_OK);
        std::vector<double> ref(yr * N, 0.0);
        std::vector<bool> written(yr, combine);
        for (int64_t s = 0; s < S; ++s) {
          if (ids[s] < 0) continue;
          written[combine ? s / k : s] = true;
          for (int64_t n = 0; n < N; ++n) {
            double acc = 0;
            for (int64_t c = 0; c < K; ++c) acc += double(x[(per_slot_x ? s : s / k) * K + c]) * experts[ids[s]].dense[n * K + c];
            if (combine) ref[(s / k) * N + n] += wts[s] * acc;
            else ref[s * N + n] = acc;
          }
        }
        // Rows of unrouted slots stay unwritten without a combine; compare the others.
        std::vector<float> got;
        std::vector<double> want;
        for (int64_t r = 0; r < yr; ++r)
          if (written[r])
            for (int64_t n = 0; n < N; ++n) got.push_back(y[r * N + n]), want.push_back(ref[r * N + n]);
        size_t nan = 0;
        for (float v : got) nan += std::isnan(v);
        EXPECT_EQ(nan, 0u) << "T=" << T << " per_slot_x=" << per_slot_x << " combine=" << combine;
        EXPECT_LE(rel_error(got, want), 1e-2) << "T=" << T << " per_slot_x=" << per_slot_x << " combine=" << combine;
      }
  }
  for (xq_qweight* w : qws) P.vt().qweight_release(P.state(), w);
}

// W4AFP8 experts (int4 weights, dynamic per-token E4M3 activations): the
// expert-by-expert path must round each routed row to E4M3 as QMATMUL does
// for such a weight, not run the experts' W4A16 arithmetic. The reference
// rounds x per token (s = max|x| / 448) by brute force; the E4M3 rounding
// moves the result by ~2% of its norm, far above the int8-block GEMV noise
// (~1e-3), so the two bounds below tell the arithmetic apart.
TEST(CpuMoe, ExpertsKeepTheirFp8ActivationScheme) {
  auto& P = cpu();
  ASSERT_NE(P.p, nullptr);
  const int E = 4, k = 2;
  const int64_t N = 64, K = 256, T = 9, S = T * k;
  std::vector<Expert> experts;
  std::vector<xq_qweight*> qws(E);
  experts.reserve(E);
  for (int e = 0; e < E; ++e) {
    experts.emplace_back(N, K, 128);
    experts[e].q.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
    experts[e].q.act_bits = XQ_BITS_F8_E4M3;
    ASSERT_EQ(P.vt().qweight_prepare(P.state(), &experts[e].q, &qws[e]), XQ_OK) << xquant::last_error();
  }
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(T * K), y(T * N, NAN), wts(S);
  std::vector<int32_t> ids(S);
  for (auto& v : x) v = u(rng());
  for (int64_t s = 0; s < S; ++s) ids[s] = static_cast<int32_t>((s / k + s % k) % E), wts[s] = 0.5f;
  std::vector<double> xq(x.size());  // each token's row rounded to E4M3 and scaled back
  for (int64_t t = 0; t < T; ++t) {
    float amax = 0.f;
    for (int64_t c = 0; c < K; ++c) amax = std::max(amax, std::fabs(x[t * K + c]));
    const float scale = amax / 448.f;
    for (int64_t c = 0; c < K; ++c) xq[t * K + c] = test::nearest_e4m3(x[t * K + c] / scale) * scale;
  }
  xq_moe_op op = moe_op(E, k, qws.data(), x.data(), T, K, ids.data(), T, wts.data(), y.data(), T, N);
  ASSERT_EQ(P.vt().moe_qmatmul(P.state(), &op), XQ_OK) << xquant::last_error();
  std::vector<double> ref_fp8(T * N, 0.0), ref_exact(T * N, 0.0);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t n = 0; n < N; ++n) {
      double a8 = 0, a = 0;
      for (int64_t c = 0; c < K; ++c) {
        const double w = experts[ids[s]].dense[n * K + c];
        a8 += xq[(s / k) * K + c] * w;
        a += double(x[(s / k) * K + c]) * w;
      }
      ref_fp8[(s / k) * N + n] += wts[s] * a8;
      ref_exact[(s / k) * N + n] += wts[s] * a;
    }
  const double to_fp8 = rel_error(y, ref_fp8), to_exact = rel_error(y, ref_exact);
  EXPECT_LE(to_fp8, 5e-3) << "the experts' output is not the E4M3-activation product";
  EXPECT_GE(to_exact, 1e-2) << "the experts ran on exact activations (W4A16 arithmetic), error " << to_exact;
  for (xq_qweight* w : qws) P.vt().qweight_release(P.state(), w);
}

TEST(CpuMoe, RefusesMismatchedOperandsWithAReason) {
  auto& P = cpu();
  ASSERT_NE(P.p, nullptr);
  Expert a(64, 128, 32), b(32, 128, 32);
  xq_qweight *wa = nullptr, *wb = nullptr;
  ASSERT_EQ(P.vt().qweight_prepare(P.state(), &a.q, &wa), XQ_OK);
  ASSERT_EQ(P.vt().qweight_prepare(P.state(), &b.q, &wb), XQ_OK);
  const xq_qweight* qws[2] = {wa, wb};
  std::vector<int32_t> ids{0, 1};
  std::vector<float> x(128), y(2 * 64);
  xq_moe_op op = sdk::make_struct<xq_moe_op>();
  op.n_experts = 2;
  op.top_k = 2;
  op.experts = qws;
  op.x = sdk::device_tensor(XQ_DTYPE_F32, {1, 128}, x.data());
  op.expert_ids = sdk::device_tensor(XQ_DTYPE_I32, {1, 2}, ids.data());
  op.dst = sdk::device_tensor(XQ_DTYPE_F32, {2, 64}, y.data());
  EXPECT_EQ(P.vt().moe_qmatmul(P.state(), &op), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(xquant::last_error().find("expert 1 is [32, 128]"), std::string::npos) << xquant::last_error();
  qws[1] = wa;
  op.dst = sdk::device_tensor(XQ_DTYPE_F32, {1, 64}, y.data());  // no weights: one row per slot is needed
  EXPECT_EQ(P.vt().moe_qmatmul(P.state(), &op), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(xquant::last_error().find("dst must be"), std::string::npos) << xquant::last_error();
  P.vt().qweight_release(P.state(), wa);
  P.vt().qweight_release(P.state(), wb);
}

}  // namespace

}  // namespace test_cpu_moe
