// test_moe_w4_grouped.cpp: moe_qmatmul with W4A16 experts through the
// grouped CUTLASS mixed-input GEMM (moe_w4a16_provider.cpp, forced with
// XQUANT_CUDA_MOE_W4=grouped) on fresh random int4 experts and routing,
// against
//   - a double-precision per-slot reference on the dequantized weights
//     (combined rows summed with the router weights); bound as the other
//     MoE suites, BF16 1e-2;
//   - the mma.sync kernel (XQUANT_CUDA_MOE_W4=fused) on the same call, 1e-2.
// Experts with 0, 1, 7 and 300 routed slots, every token tile (32 with K
// step 128, its fallback to 64 for groups of 64, 64 and 128),
// 3 column tiles, groups of 64 and 128, per-channel, a ragged last group,
// zero points, both x forms, with and without the combine, poisoned outputs,
// ids outside [0, E) (rows left unwritten, nothing added), each call
// recorded as a graph and replayed into a poisoned dst (same bytes), and
// the refusals. Skips where the path is absent (no sm_90, no CUTLASS).
#include "test_host.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

using namespace xqtest;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_moe_w4_grouped {

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
  q.strategy = gs == K ? XQ_STRATEGY_CHANNEL : XQ_STRATEGY_GROUP;
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

struct Experts {
  std::vector<Expert> host;
  std::vector<xq_qweight*> q;
  Experts(int E, int64_t N, int64_t K, int64_t gs, bool asym) : q(E) {
    auto& P = Plugin::get();
    for (int e = 0; e < E; ++e) host.push_back(make_expert(N, K, gs, asym));
    for (int e = 0; e < E; ++e) EXPECT_EQ(P.vt->qweight_prepare(P.state, &host[e].q, &q[e]), XQ_OK) << g_last_error;
  }
  ~Experts() {
    auto& P = Plugin::get();
    for (xq_qweight* w : q) P.vt->qweight_release(P.state, w);
  }
};

// XQUANT_CUDA_MOE_W4 for one scope.
struct W4Mode {
  explicit W4Mode(const char* m) { ::setenv("XQUANT_CUDA_MOE_W4", m, 1); }
  ~W4Mode() { ::unsetenv("XQUANT_CUDA_MOE_W4"); }
};

xq_moe_op moe_op(const std::vector<xq_qweight*>& q, int k) {
  xq_moe_op op{};
  op.struct_size = sizeof(op);
  op.n_experts = static_cast<uint32_t>(q.size());
  op.top_k = static_cast<uint32_t>(k);
  op.experts = q.data();
  return op;
}

// Whether this build and GPU run these experts through the grouped GEMM (a
// zero-token probe with the path forced); the reason when not.
bool grouped_here(const std::vector<xq_qweight*>& q, int64_t N, int64_t K, std::string* why) {
  auto& P = Plugin::get();
  static DevBuf probe(256);
  W4Mode mode("grouped");
  xq_moe_op op = moe_op(q, 1);
  op.x = tensor2(XQ_DTYPE_BF16, 0, K, probe.p);
  op.expert_ids = tensor2(XQ_DTYPE_I32, 0, 1, probe.p);
  op.dst = tensor2(XQ_DTYPE_BF16, 0, N, probe.p);
  const xq_status s = P.vt->moe_qmatmul(P.state, &op);
  *why = g_last_error;
  return s == XQ_OK;
}

// A kernel fault (an illegal instruction, say) leaves this process's CUDA
// context unusable, and every later test of the suite would fail with it. So
// the grouped GEMM runs first in a child process (this binary, filtered to
// MoeW4GroupedProbe.OneCallInAChild): the tests here run it only when that
// child passed, and fail, naming the child's output, when it did not.
bool grouped_runs_in_a_child(std::string* log) {
  static int ok = -1;
  static std::string out;
  if (ok < 0) {
    char exe[4096];
    const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
      out = "cannot read /proc/self/exe";
      ok = 0;
    } else {
      exe[n] = 0;
      const std::string path = testing::TempDir() + "moe_w4_grouped_probe.log";
      const std::string cmd = std::string("XQ_MOE_W4_GROUPED_PROBE=1 '") + exe +
                              "' --gtest_filter=MoeW4GroupedProbe.OneCallInAChild > '" + path + "' 2>&1";
      ok = std::system(cmd.c_str()) == 0 ? 1 : 0;
      std::ifstream f(path);
      std::stringstream ss;
      ss << f.rdbuf();
      out = ss.str();
      if (out.size() > 3000) out = "..." + out.substr(out.size() - 3000);
    }
  }
  *log = out;
  return ok == 1;
}

#define XQ_REQUIRE_W4_GROUPED(experts, N, K)                                                                 \
  do {                                                                                                       \
    std::string _why;                                                                                        \
    if (!grouped_here((experts).q, N, K, &_why)) GTEST_SKIP() << _why;                                       \
    if (!grouped_runs_in_a_child(&_why))                                                                     \
      FAIL() << "the grouped GEMM failed in a child process (not run here, so the suite keeps a working "    \
                "CUDA context); its output:\n"                                                              \
             << _why;                                                                                        \
  } while (0)

// Slots routed so that expert e gets exactly counts[e] of them (shuffled
// over the tokens), then T = S / k tokens; router weights random, summing
// to one per token.
void routing_from_counts(const std::vector<int>& counts, int k, std::vector<int32_t>* ids,
                         std::vector<float>* weights) {
  ids->clear();
  for (size_t e = 0; e < counts.size(); ++e) ids->insert(ids->end(), counts[e], static_cast<int32_t>(e));
  std::shuffle(ids->begin(), ids->end(), rng());
  const int64_t T = static_cast<int64_t>(ids->size()) / k;
  ids->resize(T * k);
  weights->resize(T * k);
  for (int64_t t = 0; t < T; ++t) {
    float sum = 0;
    for (int j = 0; j < k; ++j) sum += (*weights)[t * k + j] = uniform(0.05f, 1.f);
    for (int j = 0; j < k; ++j) (*weights)[t * k + j] /= sum;
  }
}

std::vector<float> read_rows(DevBuf& d, int64_t n, std::vector<uint16_t>* bits) {
  *bits = d.get<uint16_t>(n);
  std::vector<float> y(n);
  for (int64_t i = 0; i < n; ++i) y[i] = half_bits_to_f32((*bits)[i], XQ_DTYPE_BF16);
  return y;
}

// All four forms of one routing through the grouped GEMM: against the
// double reference and the mma.sync kernel; each call also recorded as a
// graph and replayed into a poisoned dst.
void check_routing(const Experts& ex, const std::vector<int32_t>& ids, const std::vector<float>& weights, int k,
                   int64_t N, int64_t K) {
  auto& P = Plugin::get();
  const int64_t S = static_cast<int64_t>(ids.size()), T = S / k;
  const int E = static_cast<int>(ex.q.size());
  DevBuf dids(S * 4), dw(S * 4);
  dids.put(ids);
  dw.put(weights);
  for (bool per_slot_x : {false, true}) {
    const int64_t xrows = per_slot_x ? S : T;
    std::vector<float> x(xrows * K), xr;
    for (auto& v : x) v = uniform(-1.f, 1.f);
    const auto xbits = to_half_bits(x, XQ_DTYPE_BF16, &xr);
    DevBuf dx(xrows * K * 2);
    dx.put(xbits);
    std::vector<double> slot_rows(S * N, 0.0);
    for (int64_t s = 0; s < S; ++s) {
      if (ids[s] < 0 || ids[s] >= E) continue;
      const std::vector<float>& W = ex.host[ids[s]].dense;
      const float* xrow = &xr[(per_slot_x ? s : s / k) * K];
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t kk = 0; kk < K; ++kk) acc += static_cast<double>(xrow[kk]) * W[n * K + kk];
        slot_rows[s * N + n] = acc;
      }
    }
    for (bool combine : {false, true}) {
      const int64_t yrows = combine ? T : S;
      const std::string what = std::string(per_slot_x ? "x per slot" : "x per token") + (combine ? ", combined" : "");
      DevBuf dy(yrows * N * 2);
      xq_moe_op op = moe_op(ex.q, k);
      op.x = tensor2(XQ_DTYPE_BF16, xrows, K, dx.p);
      op.expert_ids = tensor2(XQ_DTYPE_I32, T, k, dids.p);
      if (combine) op.weights = tensor2(XQ_DTYPE_F32, T, k, dw.p);
      op.dst = tensor2(XQ_DTYPE_BF16, yrows, N, dy.p);

      std::vector<uint16_t> mma_bits;
      {
        W4Mode mode("fused");
        dy.poison();
        ASSERT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_OK) << what << " (mma): " << g_last_error;
        mma_bits = dy.get<uint16_t>(yrows * N);
      }
      W4Mode mode("grouped");
      dy.poison();
      ASSERT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_OK) << what << ": " << g_last_error;
      std::vector<uint16_t> ybits;
      const auto y = read_rows(dy, yrows * N, &ybits);

      // Compared over the rows that are written: every combined row, the
      // routed slots' rows (the others must still hold the poison).
      std::vector<float> got, mma;
      std::vector<double> want;
      for (int64_t r = 0; r < yrows; ++r) {
        if (!combine && (ids[r] < 0 || ids[r] >= E)) {
          for (int64_t n = 0; n < N; ++n) EXPECT_EQ(ybits[r * N + n], 0xFFFF) << what << ": slot " << r << " written";
          continue;
        }
        for (int64_t n = 0; n < N; ++n) {
          double w = 0;
          if (!combine) w = slot_rows[r * N + n];
          else
            for (int j = 0; j < k; ++j)
              if (ids[r * k + j] >= 0 && ids[r * k + j] < E) w += weights[r * k + j] * slot_rows[(r * k + j) * N + n];
          got.push_back(y[r * N + n]);
          mma.push_back(half_bits_to_f32(mma_bits[r * N + n], XQ_DTYPE_BF16));
          want.push_back(w);
        }
      }
      EXPECT_EQ(count_nan(got), 0u) << what << ": unwritten (poisoned) outputs";
      EXPECT_LE(rel_error(got, want), 1e-2) << what;
      std::vector<double> mma_d(mma.begin(), mma.end());
      EXPECT_LE(rel_error(got, mma_d), 1e-2) << what << ": against the mma.sync kernel";

      dy.poison();
      xq_graph* g = nullptr;
      ASSERT_EQ(P.vt->graph_begin(P.state), XQ_OK) << g_last_error;
      const xq_status recorded = P.vt->moe_qmatmul(P.state, &op);
      const std::string record_error = g_last_error;
      ASSERT_EQ(P.vt->graph_end(P.state, &g), XQ_OK) << g_last_error;
      ASSERT_EQ(recorded, XQ_OK) << what << ": " << record_error;
      ASSERT_EQ(P.vt->graph_launch(P.state, g), XQ_OK) << g_last_error;
      EXPECT_EQ(dy.get<uint16_t>(yrows * N), ybits) << what << ": replayed graph";
      P.vt->graph_release(P.state, g);
    }
  }
}

// The child of grouped_runs_in_a_child: one grouped call (each token tile),
// synchronized and compared with the mma.sync kernel. Skips unless started
// as that child.
TEST(MoeW4GroupedProbe, OneCallInAChild) {
  if (!std::getenv("XQ_MOE_W4_GROUPED_PROBE")) GTEST_SKIP() << "runs only as the child of the grouped tests";
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int E = 2;
  const int64_t N = 128, K = 256;
  Experts ex(E, N, K, 128, true);
  std::string why;
  if (!grouped_here(ex.q, N, K, &why)) GTEST_SKIP() << why;
  for (int64_t T : {40, 100, 300}) {  // 32-, 64- and 128-token tiles (mean 20, 50, 150 per expert)
    std::vector<int32_t> ids(T);
    for (int64_t t = 0; t < T; ++t) ids[t] = static_cast<int32_t>(t % E);
    std::vector<float> x(T * K);
    for (auto& v : x) v = uniform(-1.f, 1.f);
    DevBuf dids(T * 4), dx(T * K * 2), dy(T * N * 2);
    dids.put(ids);
    dx.put(to_half_bits(x, XQ_DTYPE_BF16, nullptr));
    xq_moe_op op = moe_op(ex.q, 1);
    op.x = tensor2(XQ_DTYPE_BF16, T, K, dx.p);
    op.expert_ids = tensor2(XQ_DTYPE_I32, T, 1, dids.p);
    op.dst = tensor2(XQ_DTYPE_BF16, T, N, dy.p);
    std::vector<float> mma, got;
    std::vector<uint16_t> bits;
    {
      W4Mode mode("fused");
      ASSERT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_OK) << g_last_error;
      mma = read_rows(dy, T * N, &bits);
    }
    W4Mode mode("grouped");
    dy.poison();
    ASSERT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_OK) << g_last_error;
    ASSERT_EQ(P.vt->synchronize(P.state), XQ_OK) << g_last_error;
    got = read_rows(dy, T * N, &bits);
    EXPECT_EQ(count_nan(got), 0u) << "T = " << T;
    EXPECT_LE(rel_error(got, std::vector<double>(mma.begin(), mma.end())), 1e-2) << "T = " << T;
  }
}

struct GroupedCase {
  int k;
  int64_t N, K, gs;
  bool asym;
  std::vector<int> counts;  // routed slots per expert
};

std::string grouped_case_name(const testing::TestParamInfo<GroupedCase>& i) {
  const GroupedCase& c = i.param;
  int64_t S = 0;
  for (int v : c.counts) S += v;
  return "E" + std::to_string(c.counts.size()) + "_k" + std::to_string(c.k) + "_S" + std::to_string(S) + "_N" +
         std::to_string(c.N) + "_K" + std::to_string(c.K) + "_g" + std::to_string(c.gs) + (c.asym ? "_asym" : "_sym");
}

class MoeW4Grouped : public testing::TestWithParam<GroupedCase> {};

TEST_P(MoeW4Grouped, MatchesReferenceAndMmaKernel) {
  XQ_REQUIRE_GPU();
  const GroupedCase c = GetParam();
  Experts ex(static_cast<int>(c.counts.size()), c.N, c.K, c.gs, c.asym);
  XQ_REQUIRE_W4_GROUPED(ex, c.N, c.K);
  std::vector<int32_t> ids;
  std::vector<float> weights;
  routing_from_counts(c.counts, c.k, &ids, &weights);
  check_routing(ex, ids, weights, c.k, c.N, c.K);
}

std::vector<GroupedCase> grouped_cases() {
  return {
      // 0, 1, 7 and 300 slots; 128-token tiles (mean 84 per expert)
      {2, 256, 512, 128, false, {0, 1, 7, 300, 64, 130}},
      // 3 column tiles, groups of 64 with zero points, mean 75: 128-token tiles
      {4, 384, 1024, 64, true, {75, 0, 150, 75, 75, 1, 74, 150, 75, 75, 75, 25, 125, 75, 75, 75}},
      // per-channel with zero points, mean 25: 32-token tiles, K step 128
      {2, 128, 768, 768, true, {25, 0, 50, 7, 1, 43, 49, 25}},
      // groups of 128, mean 21: 32-token tiles over experts of 0-40 rows
      {2, 256, 1024, 128, false, {20, 0, 40, 31, 1, 33}},
      // groups of 64 with zero points, mean 16: the 32-token tile needs K steps of 128, so 64-token tiles
      {2, 256, 512, 64, true, {10, 50, 0, 4}},
      // mean 34.5: 64-token tiles
      {2, 128, 512, 128, false, {60, 30, 48, 0}},
      // a ragged last group (K = 576 = 4.5 groups of 128); an odd expert count (the pointer lists' alignment)
      {1, 128, 576, 128, false, {200, 3, 0, 97, 11}},
      // 9,000 slots: the many-block sort (moe_w8a8_sort past 8,192 slots)
      {4, 128, 256, 128, false, {3000, 0, 2500, 1, 2000, 1499}},
  };
}

INSTANTIATE_TEST_SUITE_P(Cuda, MoeW4Grouped, testing::ValuesIn(grouped_cases()), grouped_case_name);

// Slots whose id is outside [0, n_experts) are left unwritten per slot and
// add nothing to a combined row.
TEST(MoeW4GroupedRouting, OutOfRangeIdsAddNothing) {
  XQ_REQUIRE_GPU();
  const int E = 4, k = 2;
  const int64_t T = 90, N = 128, K = 256;
  Experts ex(E, N, K, 128, false);
  XQ_REQUIRE_W4_GROUPED(ex, N, K);
  std::vector<int32_t> ids(T * k);
  std::vector<float> weights(T * k, 0.5f);
  for (int64_t t = 0; t < T; ++t) {
    ids[t * k] = static_cast<int32_t>(t % E);
    ids[t * k + 1] = t % 3 == 0 ? -1 : t % 3 == 1 ? E : static_cast<int32_t>((t + 1) % E);
  }
  check_routing(ex, ids, weights, k, N, K);
}

// The output bytes of one call in a mode (slots per expert: `tpe`, k = 2).
std::vector<uint16_t> run_in_mode(const Experts& ex, const char* mode, int tpe, int64_t N, int64_t K) {
  auto& P = Plugin::get();
  const int E = static_cast<int>(ex.q.size()), k = 2;
  // Slot j of token t to expert (t k + j) mod E: tpe slots each, the same
  // routing and x (a fixed seed) for every mode.
  const int64_t S = static_cast<int64_t>(E) * tpe, T = S / k;
  std::vector<int32_t> ids(S);
  for (int64_t s = 0; s < S; ++s) ids[s] = static_cast<int32_t>(s % E);
  const std::vector<float> weights(S, 0.5f);
  std::mt19937 fixed(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(T * K), xr;
  for (auto& v : x) v = u(fixed);
  DevBuf dx(T * K * 2), dids(S * 4), dw(S * 4), dy(T * N * 2);
  dx.put(to_half_bits(x, XQ_DTYPE_BF16, &xr));
  dids.put(ids);
  dw.put(weights);
  xq_moe_op op = moe_op(ex.q, k);
  op.x = tensor2(XQ_DTYPE_BF16, T, K, dx.p);
  op.expert_ids = tensor2(XQ_DTYPE_I32, T, k, dids.p);
  op.weights = tensor2(XQ_DTYPE_F32, T, k, dw.p);
  op.dst = tensor2(XQ_DTYPE_BF16, T, N, dy.p);
  W4Mode m(mode);
  dy.poison();
  EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_OK) << mode << ": " << g_last_error;
  return dy.get<uint16_t>(T * N);
}

// `auto` takes the grouped GEMM from 1 slot per expert for experts of
// K >= 8192 (Mixtral's down_proj), from 32 for K <= 1024 (Qwen3-30B-A3B's
// down_proj) and from 48 between (kMoeW4GroupedDeepK, kMoeW4GroupedShallowK
// in moe_w4a16_provider.cpp): its bytes are the forced grouped GEMM's there
// and the mma.sync kernel's below. The routing and x are the same for every
// mode of one case, so equal bytes mean the same kernel ran.
TEST(MoeW4GroupedAuto, DeepExpertsFrom1ShallowFrom32OthersFrom48SlotsPerExpert) {
  XQ_REQUIRE_GPU();
  const int64_t N = 128;
  for (const auto& [K, tpe, grouped] : std::vector<std::tuple<int64_t, int, bool>>{
           {8192, 4, true}, {8192, 16, true}, {1024, 16, false}, {1024, 32, true}, {4096, 32, false},
           {4096, 48, true}}) {
    SCOPED_TRACE("K " + std::to_string(K) + ", " + std::to_string(tpe) + " slots per expert");
    Experts ex(4, N, K, 128, false);
    XQ_REQUIRE_W4_GROUPED(ex, N, K);
    const auto fused = run_in_mode(ex, "fused", tpe, N, K), forced = run_in_mode(ex, "grouped", tpe, N, K),
               chosen = run_in_mode(ex, "auto", tpe, N, K);
    ASSERT_NE(fused, forced) << "the two kernels gave the same bytes: this case cannot tell them apart";
    EXPECT_EQ(chosen, grouped ? forced : fused) << (grouped ? "auto did not take the grouped GEMM"
                                                            : "auto did not keep the mma.sync kernel");
  }
}

TEST(MoeW4GroupedErrors, ForcedGroupedRefusesWhatItCannotRun) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int64_t N = 128, K = 256;
  Experts ex(2, N, K, 128, false);
  XQ_REQUIRE_W4_GROUPED(ex, N, K);
  DevBuf dx(4 * K * 2), dids(4 * 4), dy(4 * N * 2);
  dids.put(std::vector<int32_t>{0, 1, 1, 0});
  xq_moe_op op = moe_op(ex.q, 1);
  op.x = tensor2(XQ_DTYPE_F16, 4, K, dx.p);
  op.expert_ids = tensor2(XQ_DTYPE_I32, 4, 1, dids.p);
  op.dst = tensor2(XQ_DTYPE_F16, 4, N, dy.p);
  {
    W4Mode mode("grouped");
    EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_UNSUPPORTED);
    EXPECT_NE(g_last_error.find("BF16"), std::string::npos) << g_last_error;
  }
  {
    W4Mode mode("auto");  // F16 stays on the mma.sync kernel
    EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_OK) << g_last_error;
  }
  {
    W4Mode mode("sideways");
    EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(g_last_error.find("XQUANT_CUDA_MOE_W4"), std::string::npos) << g_last_error;
  }
  {
    // A token tile the grouped GEMM does not have.
    op.x.dtype = op.dst.dtype = XQ_DTYPE_BF16;
    W4Mode mode("grouped");
    ::setenv("XQUANT_CUDA_MOE_W4_TILE", "48", 1);
    EXPECT_EQ(P.vt->moe_qmatmul(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(g_last_error.find("XQUANT_CUDA_MOE_W4_TILE=48"), std::string::npos) << g_last_error;
    ::unsetenv("XQUANT_CUDA_MOE_W4_TILE");
  }
}

}  // namespace

}  // namespace test_moe_w4_grouped
