// test_moe_ops.cpp: the cuda provider's MOE_ROUTE and MOE_COMBINE
// (plugins/cuda/src/moe_ops.cu) through the real plugin, on fresh random
// logits and rows, against a double-precision reference written here:
// softmax, top-k (descending, the lower id first on ties), with and without
// norm_topk_prob; the combine with sorted-row indices, skipped slots and
// the sigmoid gate; refusals named.
// Bounds: ids exactly equal (random logits have no near-ties at these
// sizes: the reference checks the margin and redraws), weights within 1e-5
// relative, combined rows within 1e-5 relative.
#include "test_host.hpp"

#include <numeric>
#include <tuple>

using namespace xqtest;

namespace {

struct RouteRef {
  std::vector<int32_t> ids;
  std::vector<double> w;
  bool near_tie = false;
};

RouteRef route_ref(const std::vector<float>& logits, int64_t T, int64_t E, int64_t k, bool norm) {
  RouteRef r;
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits.data() + t * E;
    double mx = *std::max_element(l, l + E), sum = 0;
    std::vector<double> p(E);
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(l[e] - mx);
    std::vector<int32_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    for (int64_t j = 0; j + 1 < std::min(k + 1, E); ++j)  // order inside the top k and at its edge
      if (p[order[j]] - p[order[j + 1]] < 1e-5 * p[order[j]]) r.near_tie = true;
    double top = 0;
    for (int64_t j = 0; j < k; ++j) top += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      r.ids.push_back(order[j]);
      r.w.push_back(norm ? p[order[j]] / top : p[order[j]] / sum);
    }
  }
  return r;
}

xq_op make(xq_op_type t) { return xquant::sdk::make_op(t); }

}  // namespace

TEST(MoeRoute, MatchesSoftmaxTopKReference) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  for (auto [T, E, k, norm] : {std::tuple<int64_t, int64_t, int64_t, bool>{1, 8, 2, true}, {7, 8, 2, false},
                               {37, 64, 6, true}, {300, 128, 8, true}, {5, 60, 4, false}, {3, 1024, 32, true},
                               {2, 33, 32, true}}) {
    std::vector<float> logits(T * E);
    RouteRef ref;
    do {
      for (auto& v : logits) v = uniform(-4.f, 4.f);
      ref = route_ref(logits, T, E, k, norm);
    } while (ref.near_tie);
    DevBuf dl(logits.size() * 4), di(T * k * 4), dw(T * k * 4);
    dl.put(logits);
    di.poison();
    dw.poison();
    xq_op op = make(XQ_OP_MOE_ROUTE);
    op.src[0] = tensor2(XQ_DTYPE_F32, T, E, dl.p);
    op.dst = tensor2(XQ_DTYPE_I32, T, k, di.p);
    op.src[1] = tensor2(XQ_DTYPE_F32, T, k, dw.p);
    op.i[0] = norm ? 1 : 0;
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    const auto ids = di.get<int32_t>(T * k);
    const auto w = dw.get<float>(T * k);
    EXPECT_EQ(ids, ref.ids) << "T " << T << " E " << E << " k " << k;
    for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(w[i], ref.w[i], 1e-5 * ref.w[i] + 1e-7) << i;
  }
}

TEST(MoeRoute, EqualLogitsChooseTheLowestIds) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int64_t T = 3, E = 70, k = 5;
  std::vector<float> logits(T * E, 0.25f);
  DevBuf dl(logits.size() * 4), di(T * k * 4), dw(T * k * 4);
  dl.put(logits);
  xq_op op = make(XQ_OP_MOE_ROUTE);
  op.src[0] = tensor2(XQ_DTYPE_F32, T, E, dl.p);
  op.dst = tensor2(XQ_DTYPE_I32, T, k, di.p);
  op.src[1] = tensor2(XQ_DTYPE_F32, T, k, dw.p);
  op.i[0] = 1;
  XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
  const auto ids = di.get<int32_t>(T * k);
  const auto w = dw.get<float>(T * k);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(ids[t * k + j], j);
      EXPECT_NEAR(w[t * k + j], 1.0 / k, 1e-6);
    }
}

TEST(MoeCombine, AddsWeightedRowsInSlotOrder) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  for (auto [T, k, N, sorted, sigmoid] : {std::tuple<int64_t, int64_t, int64_t, bool, bool>{1, 8, 2048, true, false},
                                          {41, 2, 300, true, false}, {5, 4, 64, false, false}, {9, 1, 1000, false, true}}) {
    const int64_t slots = T * k, R = slots + 3;
    std::vector<float> y(R * N), w(slots), dst(T * N);
    for (auto& v : y) v = uniform(-1.f, 1.f);
    for (auto& v : w) v = uniform(-2.f, 2.f);
    for (auto& v : dst) v = uniform(-1.f, 1.f);
    std::vector<int32_t> where(slots);
    std::iota(where.begin(), where.end(), 0);
    std::shuffle(where.begin(), where.end(), rng());
    if (sorted) where[slots / 2] = -1;  // a slot that adds nothing
    std::vector<double> ref(dst.begin(), dst.end());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = t * k + j, r = sorted ? where[s] : s;
        if (r < 0) continue;
        const double g = sigmoid ? 1.0 / (1.0 + std::exp(-static_cast<double>(w[s]))) : w[s];
        for (int64_t c = 0; c < N; ++c) ref[t * N + c] += g * y[r * N + c];
      }
    DevBuf dy(y.size() * 4), dwt(w.size() * 4), dd(dst.size() * 4), dwh(where.size() * 4);
    dy.put(y);
    dwt.put(w);
    dd.put(dst);
    dwh.put(where);
    xq_op op = make(XQ_OP_MOE_COMBINE);
    op.dst = tensor2(XQ_DTYPE_F32, T, N, dd.p);
    op.src[0] = tensor2(XQ_DTYPE_F32, R, N, dy.p);
    op.src[1] = tensor2(XQ_DTYPE_F32, T, k, dwt.p);
    if (sorted) op.src[2] = tensor1(XQ_DTYPE_I32, slots, dwh.p);
    op.i[0] = sigmoid ? 1 : 0;
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    EXPECT_LE(rel_error(dd.get<float>(T * N), ref), 1e-5) << "T " << T << " k " << k << " N " << N;
  }
}

TEST(MoeOpsErrors, RefusalsNameTheOperand) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  DevBuf b(1 << 16);
  xq_op op = make(XQ_OP_MOE_ROUTE);
  op.src[0] = tensor2(XQ_DTYPE_F32, 4, 8, b.p);
  op.dst = tensor2(XQ_DTYPE_I32, 4, 9, b.p);
  op.src[1] = tensor2(XQ_DTYPE_F32, 4, 9, b.p);
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 0);
  EXPECT_NE(P.vt->run_op(P.state, &op), XQ_OK);
  EXPECT_NE(g_last_error.find("top_k 9"), std::string::npos) << g_last_error;
  op.dst = tensor2(XQ_DTYPE_F32, 4, 2, b.p);
  EXPECT_NE(P.vt->run_op(P.state, &op), XQ_OK);
  EXPECT_NE(g_last_error.find("expert ids"), std::string::npos) << g_last_error;
  xq_op c = make(XQ_OP_MOE_COMBINE);
  c.dst = tensor2(XQ_DTYPE_F32, 4, 16, b.p);
  c.src[0] = tensor2(XQ_DTYPE_F32, 4, 16, b.p);
  c.src[1] = tensor2(XQ_DTYPE_F32, 4, 2, b.p);
  EXPECT_NE(P.vt->run_op(P.state, &c), XQ_OK);
  EXPECT_NE(g_last_error.find("T * k rows"), std::string::npos) << g_last_error;
}
