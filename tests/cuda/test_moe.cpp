// test_moe.cpp: moe_qmatmul (all experts of a mixture-of-experts Linear in
// one call) against a double-precision reference on fresh random int4
// experts and routing: odd token counts, experts that receive no token, an
// expert with more tokens than one GEMM token block, both activation forms
// (x per token for gate|up, x per slot for down), with and without the
// weighted combine, BF16 and F16, K not a multiple of 64, poisoned outputs.
// Bounds as the dense W4A16 suite (||out-ref||/||ref||): BF16 1e-2, F16 3e-3.
// Dense BF16/F16 experts (xq_moe_op.dense_experts, the grouped GEMM of
// moe_dense_gemm.cu) the same way, against the same reference on the rounded
// weights, with each token-block size (16, 32, 64 rows) reached; the same
// op recorded as a CUDA graph and replayed gives the eager bytes; refusals
// name what they refuse.
#include "test_host.hpp"

#include <memory>

using namespace xqtest;

namespace {

struct Expert {
  std::vector<int8_t> codes, zp;
  std::vector<float> scales, dense;  // dense: the reference dequantized [N][K]
  xq_quant_tensor q{};
};

Expert make_expert(int64_t N, int64_t K, int64_t gs, bool asym) {
  Expert w;
  const int64_t G = (K + gs - 1) / gs;
  w.codes.resize(N * K);
  for (auto& v : w.codes) v = static_cast<int8_t>(uniform_int(-8, 7));
  w.scales.resize(N * G);
  for (auto& s : w.scales) s = uniform(0.002f, 0.02f);
  if (asym) {
    w.zp.resize(N * G);
    for (auto& z : w.zp) z = static_cast<int8_t>(uniform_int(-8, 7));
  }
  w.dense.resize(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = k / gs;
      w.dense[n * K + k] = static_cast<float>(w.codes[n * K + k] - (asym ? w.zp[n * G + g] : 0)) * w.scales[n * G + g];
    }
  xq_quant_tensor& q = w.q;
  q.struct_size = sizeof(q);
  q.bits = 4;
  q.symmetric = asym ? 0 : 1;
  q.strategy = XQ_STRATEGY_GROUP;
  q.rows = N;
  q.cols = K;
  q.group_size = gs;
  q.n_groups = G;
  q.codes = w.codes.data();
  q.scales = w.scales.data();
  q.zero_points = asym ? w.zp.data() : nullptr;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_NONE;
  return w;
}

// Routing: each token picks top_k distinct experts among `used` (the others
// receive no token); weights are random and normalised as Qwen3-MoE's.
void make_routing(int64_t T, int k, const std::vector<int>& used, std::vector<int32_t>* ids,
                  std::vector<float>* weights) {
  ids->resize(T * k);
  weights->resize(T * k);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int> pick = used;
    std::shuffle(pick.begin(), pick.end(), rng());
    float sum = 0;
    for (int j = 0; j < k; ++j) {
      (*ids)[t * k + j] = pick[j];
      (*weights)[t * k + j] = uniform(0.05f, 1.f);
      sum += (*weights)[t * k + j];
    }
    for (int j = 0; j < k; ++j) (*weights)[t * k + j] /= sum;
  }
}

struct MoeCase {
  xq_dtype dtype;
  int E, k;
  int64_t T, N, K, gs;
  bool asym;
  int unused;  // experts (the highest ids) that receive no token
};

std::string case_name(const testing::TestParamInfo<MoeCase>& i) {
  const MoeCase& c = i.param;
  return std::string(c.dtype == XQ_DTYPE_BF16 ? "bf16" : "f16") + "_E" + std::to_string(c.E) + "_k" +
         std::to_string(c.k) + "_T" + std::to_string(c.T) + "_N" + std::to_string(c.N) + "_K" + std::to_string(c.K) +
         "_g" + std::to_string(c.gs) + (c.asym ? "_asym" : "_sym") + "_idle" + std::to_string(c.unused);
}

class Moe : public testing::TestWithParam<MoeCase> {};

TEST_P(Moe, MatchesPerExpertReference) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  ASSERT_GE(P.vt->struct_size, offsetof(xq_kernel_vtable, moe_qmatmul) + sizeof(void*));
  ASSERT_NE(P.vt->moe_qmatmul, nullptr);
  const MoeCase c = GetParam();
  const int64_t T = c.T, N = c.N, K = c.K, S = T * c.k;
  std::vector<Expert> experts;
  std::vector<xq_qweight*> qws(c.E);
  for (int e = 0; e < c.E; ++e) {
    experts.push_back(make_expert(N, K, c.gs, c.asym));
    XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &experts[e].q, &qws[e]));
  }
  std::vector<int> used;
  for (int e = 0; e < c.E - c.unused; ++e) used.push_back(e);
  std::vector<int32_t> ids;
  std::vector<float> weights;
  make_routing(T, c.k, used, &ids, &weights);
  DevBuf dids(S * 4), dw(S * 4);
  dids.put(ids);
  dw.put(weights);
  const double bound = c.dtype == XQ_DTYPE_BF16 ? 1e-2 : 3e-3;

  for (bool per_slot_x : {false, true})
    for (bool combine : {false, true}) {
      const int64_t xrows = per_slot_x ? S : T, yrows = combine ? T : S;
      std::vector<float> x(xrows * K), xr;
      for (auto& v : x) v = uniform(-1.f, 1.f);
      auto xbits = to_half_bits(x, c.dtype, &xr);
      DevBuf dx(xrows * K * 2), dy(yrows * N * 2);
      dx.put(xbits);
      dy.poison();
      xq_moe_op op{};
      op.struct_size = sizeof(op);
      op.n_experts = static_cast<uint32_t>(c.E);
      op.top_k = static_cast<uint32_t>(c.k);
      op.experts = qws.data();
      op.x = tensor2(c.dtype, xrows, K, dx.p);
      op.expert_ids = tensor2(XQ_DTYPE_I32, T, c.k, dids.p);
      if (combine) op.weights = tensor2(XQ_DTYPE_F32, T, c.k, dw.p);
      op.dst = tensor2(c.dtype, yrows, N, dy.p);
      XQ_OK_OR_FAIL(P.vt->moe_qmatmul(P.state, &op));
      auto ybits = dy.get<uint16_t>(yrows * N);
      std::vector<float> y(yrows * N);
      for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], c.dtype);

      // Reference: each slot through its expert, then the weighted sum.
      std::vector<double> ref(yrows * N, 0.0);
      for (int64_t s = 0; s < S; ++s) {
        const std::vector<float>& W = experts[ids[s]].dense;
        const float* xrow = &xr[(per_slot_x ? s : s / c.k) * K];
        for (int64_t n = 0; n < N; ++n) {
          double acc = 0;
          for (int64_t kk = 0; kk < K; ++kk) acc += static_cast<double>(xrow[kk]) * W[n * K + kk];
          if (combine) ref[(s / c.k) * N + n] += weights[s] * acc;
          else ref[s * N + n] = acc;
        }
      }
      const std::string what = std::string(per_slot_x ? "x per slot" : "x per token") + (combine ? ", combined" : "");
      EXPECT_EQ(count_nan(y), 0u) << what << ": unwritten (poisoned) outputs";
      EXPECT_LE(rel_error(y, ref), bound) << what;
    }
  for (xq_qweight* w : qws) P.vt->qweight_release(P.state, w);
}

std::vector<MoeCase> moe_cases() {
  return {
      {XQ_DTYPE_BF16, 8, 2, 1, 256, 512, 128, false, 0},      // a decode step
      {XQ_DTYPE_BF16, 16, 4, 37, 384, 512, 128, false, 5},    // odd T, idle experts
      {XQ_DTYPE_BF16, 16, 4, 300, 256, 1000, 128, false, 3},  // 100 slots per used expert: several token blocks
      {XQ_DTYPE_F16, 12, 3, 41, 200, 768, 64, true, 2},       // N not a multiple of 16, zero points
      {XQ_DTYPE_BF16, 128, 8, 5, 128, 256, 128, false, 100},  // 128 experts, most idle
  };
}

INSTANTIATE_TEST_SUITE_P(Cuda, Moe, testing::ValuesIn(moe_cases()), case_name);

// Slots whose id is outside [0, n_experts) add nothing to the combined row.
TEST(MoeRouting, OutOfRangeIdsAddNothing) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int E = 4, k = 2;
  const int64_t T = 9, N = 128, K = 256;
  std::vector<Expert> experts;
  std::vector<xq_qweight*> qws(E);
  for (int e = 0; e < E; ++e) {
    experts.push_back(make_expert(N, K, 128, false));
    XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &experts[e].q, &qws[e]));
  }
  std::vector<int32_t> ids(T * k);
  std::vector<float> weights(T * k, 0.5f);
  for (int64_t t = 0; t < T; ++t) {
    ids[t * k] = static_cast<int32_t>(t % E);
    ids[t * k + 1] = t % 3 == 0 ? -1 : t % 3 == 1 ? E : static_cast<int32_t>((t + 1) % E);
  }
  std::vector<float> x(T * K), xr;
  for (auto& v : x) v = uniform(-1.f, 1.f);
  auto xbits = to_half_bits(x, XQ_DTYPE_BF16, &xr);
  DevBuf dids(T * k * 4), dw(T * k * 4), dx(T * K * 2), dy(T * N * 2);
  dids.put(ids);
  dw.put(weights);
  dx.put(xbits);
  dy.poison();
  xq_moe_op op{};
  op.struct_size = sizeof(op);
  op.n_experts = E;
  op.top_k = k;
  op.experts = qws.data();
  op.x = tensor2(XQ_DTYPE_BF16, T, K, dx.p);
  op.expert_ids = tensor2(XQ_DTYPE_I32, T, k, dids.p);
  op.weights = tensor2(XQ_DTYPE_F32, T, k, dw.p);
  op.dst = tensor2(XQ_DTYPE_BF16, T, N, dy.p);
  XQ_OK_OR_FAIL(P.vt->moe_qmatmul(P.state, &op));
  auto ybits = dy.get<uint16_t>(T * N);
  std::vector<float> y(T * N);
  for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], XQ_DTYPE_BF16);
  std::vector<double> ref(T * N, 0.0);
  for (int64_t s = 0; s < T * k; ++s) {
    if (ids[s] < 0 || ids[s] >= E) continue;
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t kk = 0; kk < K; ++kk) acc += static_cast<double>(xr[(s / k) * K + kk]) * experts[ids[s]].dense[n * K + kk];
      ref[(s / k) * N + n] += 0.5 * acc;
    }
  }
  EXPECT_EQ(count_nan(y), 0u);
  EXPECT_LE(rel_error(y, ref), 1e-2);
  for (xq_qweight* w : qws) P.vt->qweight_release(P.state, w);
}

TEST(MoeErrors, MismatchedOrUnsupportedExpertsSayWhy) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  Expert a = make_expert(128, 256, 128, false), b = make_expert(64, 256, 128, false);
  xq_qweight *wa = nullptr, *wb = nullptr;
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &a.q, &wa));
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &b.q, &wb));
  DevBuf dids(8), dx(2 * 256 * 2), dy(4 * 128 * 2);
  dids.put(std::vector<int32_t>{0, 1});
  const xq_qweight* qws[2] = {wa, wb};
  xq_moe_op op{};
  op.struct_size = sizeof(op);
  op.n_experts = 2;
  op.top_k = 2;
  op.experts = qws;
  op.x = tensor2(XQ_DTYPE_BF16, 1, 256, dx.p);
  op.expert_ids = tensor2(XQ_DTYPE_I32, 1, 2, dids.p);
  op.dst = tensor2(XQ_DTYPE_BF16, 2, 128, dy.p);
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g_last_error.find("expert 1 is [64, 256]"), std::string::npos) << g_last_error;
  qws[1] = wa;
  op.x = tensor2(XQ_DTYPE_F32, 1, 256, dx.p);
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("BF16 or F16"), std::string::npos) << g_last_error;
  op.x = tensor2(XQ_DTYPE_BF16, 1, 256, dx.p);
  op.top_k = 3;
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g_last_error.find("top_k 3"), std::string::npos) << g_last_error;
  P.vt->qweight_release(P.state, wa);
  P.vt->qweight_release(P.state, wb);
}

// ---- dense experts ---------------------------------------------------------

struct DenseCase {
  xq_dtype dtype;
  int E, k;
  int64_t T, N, K;
  int unused;  // experts (the highest ids) that receive no token
};

std::string dense_case_name(const testing::TestParamInfo<DenseCase>& i) {
  const DenseCase& c = i.param;
  return std::string(c.dtype == XQ_DTYPE_BF16 ? "bf16" : "f16") + "_E" + std::to_string(c.E) + "_k" +
         std::to_string(c.k) + "_T" + std::to_string(c.T) + "_N" + std::to_string(c.N) + "_K" + std::to_string(c.K) +
         "_idle" + std::to_string(c.unused);
}

class MoeDense : public testing::TestWithParam<DenseCase> {};

TEST_P(MoeDense, MatchesPerExpertReferenceAndReplaysFromAGraph) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const DenseCase c = GetParam();
  const int64_t T = c.T, N = c.N, K = c.K, S = T * c.k;
  std::vector<std::vector<float>> dense(c.E);  // the stored (rounded) weights, [N][K]
  std::vector<std::unique_ptr<DevBuf>> bufs;
  std::vector<const void*> ptrs;
  for (int e = 0; e < c.E; ++e) {
    std::vector<float> w(N * K);
    for (auto& v : w) v = uniform(-0.05f, 0.05f);
    bufs.push_back(std::make_unique<DevBuf>(N * K * 2));
    bufs.back()->put(to_half_bits(w, c.dtype, &dense[e]));
    ptrs.push_back(bufs.back()->p);
  }
  std::vector<int> used;
  for (int e = 0; e < c.E - c.unused; ++e) used.push_back(e);
  std::vector<int32_t> ids;
  std::vector<float> weights;
  make_routing(T, c.k, used, &ids, &weights);
  DevBuf dids(S * 4), dw(S * 4);
  dids.put(ids);
  dw.put(weights);
  const double bound = c.dtype == XQ_DTYPE_BF16 ? 1e-2 : 3e-3;

  for (bool per_slot_x : {false, true})
    for (bool combine : {false, true}) {
      const int64_t xrows = per_slot_x ? S : T, yrows = combine ? T : S;
      std::vector<float> x(xrows * K), xr;
      for (auto& v : x) v = uniform(-1.f, 1.f);
      DevBuf dx(xrows * K * 2), dy(yrows * N * 2);
      dx.put(to_half_bits(x, c.dtype, &xr));
      dy.poison();
      xq_moe_op op{};
      op.struct_size = sizeof(op);
      op.n_experts = static_cast<uint32_t>(c.E);
      op.top_k = static_cast<uint32_t>(c.k);
      op.dense_experts = ptrs.data();
      op.x = tensor2(c.dtype, xrows, K, dx.p);
      op.expert_ids = tensor2(XQ_DTYPE_I32, T, c.k, dids.p);
      if (combine) op.weights = tensor2(XQ_DTYPE_F32, T, c.k, dw.p);
      op.dst = tensor2(c.dtype, yrows, N, dy.p);
      XQ_OK_OR_FAIL(P.vt->moe_qmatmul(P.state, &op));
      const auto ybits = dy.get<uint16_t>(yrows * N);
      std::vector<float> y(yrows * N);
      for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], c.dtype);

      std::vector<double> ref(yrows * N, 0.0);
      for (int64_t s = 0; s < S; ++s) {
        const std::vector<float>& W = dense[ids[s]];
        const float* xrow = &xr[(per_slot_x ? s : s / c.k) * K];
        for (int64_t n = 0; n < N; ++n) {
          double acc = 0;
          for (int64_t kk = 0; kk < K; ++kk) acc += static_cast<double>(xrow[kk]) * W[n * K + kk];
          if (combine) ref[(s / c.k) * N + n] += weights[s] * acc;
          else ref[s * N + n] = acc;
        }
      }
      const std::string what = std::string(per_slot_x ? "x per slot" : "x per token") + (combine ? ", combined" : "");
      EXPECT_EQ(count_nan(y), 0u) << what << ": unwritten (poisoned) outputs";
      EXPECT_LE(rel_error(y, ref), bound) << what;

      // Recorded (nothing runs), then replayed into a poisoned dst: the
      // routing stays on the device, so the replay writes the eager bytes.
      dy.poison();
      xq_graph* g = nullptr;
      XQ_OK_OR_FAIL(P.vt->graph_begin(P.state));
      const xq_status recorded = P.vt->moe_qmatmul(P.state, &op);
      const std::string record_error = g_last_error;
      XQ_OK_OR_FAIL(P.vt->graph_end(P.state, &g));
      ASSERT_EQ(recorded, XQ_OK) << what << ": " << record_error;
      XQ_OK_OR_FAIL(P.vt->graph_launch(P.state, g));
      EXPECT_EQ(dy.get<uint16_t>(yrows * N), ybits) << what << ": replayed graph";
      P.vt->graph_release(P.state, g);
    }
}

std::vector<DenseCase> dense_cases() {
  return {
      {XQ_DTYPE_BF16, 8, 2, 1, 256, 512, 0},      // a decode step: 16-row blocks
      {XQ_DTYPE_BF16, 16, 4, 37, 384, 512, 5},    // odd T, idle experts
      {XQ_DTYPE_BF16, 2, 1, 48, 128, 256, 0},     // 24 slots per expert: 32-row blocks
      {XQ_DTYPE_BF16, 16, 4, 300, 256, 1000, 3},  // 100 slots per used expert: several 64-row blocks
      {XQ_DTYPE_F16, 12, 3, 41, 200, 776, 2},     // N not a multiple of 64, K not of 32
      {XQ_DTYPE_BF16, 128, 8, 5, 128, 256, 100},  // 128 experts, most idle
  };
}

INSTANTIATE_TEST_SUITE_P(Cuda, MoeDense, testing::ValuesIn(dense_cases()), dense_case_name);

TEST(MoeDenseErrors, RefusalsSayWhy) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  DevBuf w0(64 * 260 * 2), w1(64 * 260 * 2), dids(8), dx(260 * 4), dy(2 * 64 * 4);
  dids.put(std::vector<int32_t>{0, 1});
  const void* ptrs[2] = {w0.p, w1.p};
  xq_moe_op op{};
  op.struct_size = sizeof(op);
  op.n_experts = 2;
  op.top_k = 2;
  op.dense_experts = ptrs;
  op.expert_ids = tensor2(XQ_DTYPE_I32, 1, 2, dids.p);
  op.x = tensor2(XQ_DTYPE_F32, 1, 256, dx.p);
  op.dst = tensor2(XQ_DTYPE_F32, 2, 64, dy.p);
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_UNSUPPORTED);  // the engine loops F32 experts
  EXPECT_NE(g_last_error.find("BF16 or F16"), std::string::npos) << g_last_error;
  op.x = tensor2(XQ_DTYPE_BF16, 1, 260, dx.p);
  op.dst = tensor2(XQ_DTYPE_BF16, 2, 64, dy.p);
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_UNSUPPORTED);
  EXPECT_NE(g_last_error.find("multiple of 8"), std::string::npos) << g_last_error;
  op.x = tensor2(XQ_DTYPE_BF16, 1, 256, dx.p);
  ptrs[1] = nullptr;
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g_last_error.find("dense expert 1"), std::string::npos) << g_last_error;
  op.dense_experts = nullptr;
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(g_last_error.find("NULL experts"), std::string::npos) << g_last_error;
}

}  // namespace
