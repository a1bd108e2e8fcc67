// test_w4a16_gemv.cpp: the W4A16 GEMVs through the plugin ABI, the split
// one (plugins/cuda/src/w4a16_gemv.cu, QMATMUL's op.i[7] = 4) and the
// streaming one (w4a16_gemv_stream.cu, op.i[7] = 5), against a
// double-precision reference of the canonical weight on fresh random data,
// outputs poisoned with NaN first.
//
// Cases cover what the kernel branches on: M = 1..8 (and 9, where the knob
// must fall back to the fused GEMM, which pins that kernel's group-16
// padding fix); no split-K (K = 256), split-K with the
// cross-block reduction, ragged chunk batches and full ones (K = 2048 at
// M = 4, 5, 8 gives 8, 11 and 16 chunks per block); group 16/32 (two and
// four scale words per chunk, and K = 1000 whose padding columns fall past
// the last group), 64, 128 with a ragged last group (K = 4160), per-channel;
// asymmetric; act-order; N not a multiple of 16 or 128; bias in F32 and in
// the activation type; BF16 and F16. A second identical call must give the
// same bytes (the split-K counters are left at zero, the sum order is fixed).
// The streaming GEMV runs every case too, plus shapes for its own branches:
// K = 64 (one chunk per tile: every tile written whole by one warp) and
// K = 8192 at N = 1024 (a few chunks per warp: tens of warps share a tile).
// The TMA-ring GEMV (w4a16_gemv_tma.cu, op.i[7] = 7; sm_90 only, elsewhere
// the knob falls back to the default dispatch) runs every case too; its own
// branches: blocks that cover whole n-blocks (K = 64: written directly, and
// at N = 38400 two n-blocks per block), ring slots cut short at an n-block's
// end with blocks that share n-blocks (K = 320: 5 chunks per n-block, 4 per
// block at N = 25600), several blocks per n-block (K = 8192), full 8-chunk
// slots from range starts inside an n-block (K = 1088 at N = 18432: 17
// chunks per n-block, about 10 per block; g128 with a short last group,
// asymmetric, act-order: the zero term through the x sums). Every case
// runs again in each split mode (XQUANT_CUDA_W4_GEMV_TMA_SPLIT: stream-K,
// n-block parts summed in a thread-block cluster where they fit, parts summed
// through the workspace); on a 132-SM H200 K = 4096 at N = 6144 takes 4
// parts a n-block in a cluster, K = 1024 at N = 5000 four in a cluster or six
// through the workspace (the last n-block short of rows), and the small cases
// clusters of up to 8. It also takes M = 9..16 (two token tiles of the
// mma's 8 tokens): M = 12 and 16 run for it too, and 17 falls back to the
// fused GEMM.
//
// Bounds as the W4A16 suite (test_w4a16.cpp): ||out-ref||/||ref|| <= 1e-2
// for BF16, 3e-3 for F16.
#include "test_host.hpp"

#include <cuda_runtime.h>

#include "w4a16_gemv_tma.hpp"

using namespace xqtest;

namespace {

struct GemvCase {
  xq_dtype dtype;
  int group;  // 0 = per-channel
  bool asym;
  bool act_order;
  int64_t K, N;
};

std::string gemv_case_name(const testing::TestParamInfo<GemvCase>& i) {
  const GemvCase& c = i.param;
  return std::string(c.dtype == XQ_DTYPE_BF16 ? "bf16" : "f16") + "_g" + std::to_string(c.group) +
         (c.asym ? "_asym" : "_sym") + (c.act_order ? "_actorder" : "") + "_K" + std::to_string(c.K) + "_N" +
         std::to_string(c.N);
}

// Canonical int4 weight (codes in [-8, 7], scales, optional zero points and
// GPTQ desc_act g_idx) and its dequantized dense copy [N][K].
struct GemvWeight {
  std::vector<int8_t> codes, zp;
  std::vector<float> scales, dense;
  std::vector<int32_t> g_idx;
  xq_quant_tensor q{};
};

GemvWeight make_weight(const GemvCase& c) {
  GemvWeight w;
  const int64_t N = c.N, K = c.K, gs = c.group ? c.group : K, G = (K + gs - 1) / gs;
  w.codes.resize(N * K);
  for (auto& v : w.codes) v = static_cast<int8_t>(uniform_int(-8, 7));
  w.scales.resize(N * G);
  for (auto& s : w.scales) s = uniform(0.002f, 0.02f);
  if (c.asym) {
    w.zp.resize(N * G);
    for (auto& z : w.zp) z = static_cast<int8_t>(uniform_int(-8, 7));
  }
  std::vector<int64_t> group_of(K);
  for (int64_t k = 0; k < K; ++k) group_of[k] = k / gs;
  if (c.act_order) {
    std::vector<int32_t> p(K);
    for (int64_t k = 0; k < K; ++k) p[k] = static_cast<int32_t>(k);
    std::shuffle(p.begin(), p.end(), rng());
    w.g_idx.resize(K);
    for (int64_t i = 0; i < K; ++i) w.g_idx[p[i]] = static_cast<int32_t>(i / gs);
    for (int64_t k = 0; k < K; ++k) group_of[k] = w.g_idx[k];
  }
  w.dense.resize(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = group_of[k];
      const int z = c.asym ? w.zp[n * G + g] : 0;
      w.dense[n * K + k] = static_cast<float>(w.codes[n * K + k] - z) * w.scales[n * G + g];
    }
  xq_quant_tensor& q = w.q;
  q.struct_size = sizeof(q);
  q.bits = 4;
  q.symmetric = c.asym ? 0 : 1;
  q.strategy = c.group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = N;
  q.cols = K;
  q.group_size = gs;
  q.n_groups = G;
  q.codes = w.codes.data();
  q.scales = w.scales.data();
  q.zero_points = c.asym ? w.zp.data() : nullptr;
  q.g_idx = c.act_order ? w.g_idx.data() : nullptr;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_NONE;
  return w;
}

constexpr int64_t kForceGemv = 4, kForceStream = 5, kForceTma = 7;

class W4A16Gemv : public testing::TestWithParam<GemvCase> {};

void check_small_batches(const GemvCase& c, int64_t force) {
  auto& P = Plugin::get();
  const int64_t N = c.N, K = c.K;
  GemvWeight w = make_weight(c);
  xq_qweight* qw = nullptr;
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &w.q, &qw));
  const double bound = c.dtype == XQ_DTYPE_BF16 ? 1e-2 : 3e-3;
  std::vector<int64_t> batches = {1, 2, 3, 4, 5, 8, 9};
  if (force == kForceTma) batches.insert(batches.end(), {12, 16, 17});  // two token tiles, then the fallback
  for (int64_t M : batches) {
    for (int bias_kind : {0, 1, 2}) {  // none, F32, the activation type
      if (bias_kind != 0 && M != 3 && M != 8 && M != 16) continue;
      std::vector<float> x(M * K), xr;
      for (auto& v : x) v = uniform(-1.f, 1.f);
      auto xbits = to_half_bits(x, c.dtype, &xr);
      std::vector<float> bias(N), bias_r;
      for (auto& b : bias) b = uniform(-0.5f, 0.5f);
      auto bias_bits = to_half_bits(bias, c.dtype, &bias_r);
      if (bias_kind == 1) bias_r = bias;
      DevBuf dx(M * K * 2), dy(M * N * 2), db(N * 4);
      dx.put(xbits);
      if (bias_kind == 1) db.put(bias);
      if (bias_kind == 2) db.put(bias_bits);
      xq_op op = make_op(XQ_OP_QMATMUL);
      op.qweight = qw;
      op.src[0] = tensor2(c.dtype, M, K, dx.p);
      if (bias_kind) op.src[2] = tensor1(bias_kind == 1 ? XQ_DTYPE_F32 : c.dtype, N, db.p);
      op.dst = tensor2(c.dtype, M, N, dy.p);
      op.i[7] = force;
      ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
      std::vector<uint16_t> first;
      for (int call = 0; call < 2; ++call) {
        dy.poison();
        XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
        auto ybits = dy.get<uint16_t>(M * N);
        if (call == 1) {
          EXPECT_TRUE(ybits == first) << "M=" << M << ": a second identical call gave other bytes";
          break;
        }
        first = ybits;
        std::vector<float> y(M * N);
        for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], c.dtype);
        auto ref = ref_matmul(xr, w.dense, M, N, K, bias_kind ? &bias_r : nullptr);
        EXPECT_EQ(count_nan(y), 0u) << "M=" << M << " bias=" << bias_kind << ": unwritten (poisoned) outputs";
        const double err = rel_error(y, ref);
        EXPECT_LE(err, bound) << "M=" << M << " bias=" << bias_kind;
        testing::Test::RecordProperty("rel_err_M" + std::to_string(M) + "_b" + std::to_string(bias_kind) + "_f" +
                                          std::to_string(force),
                                      std::to_string(err));
      }
    }
  }
  P.vt->qweight_release(P.state, qw);
}

TEST_P(W4A16Gemv, MatchesTheReferenceAtEverySmallBatch) {
  XQ_REQUIRE_GPU();
  check_small_batches(GetParam(), kForceGemv);
}

TEST_P(W4A16Gemv, StreamingMatchesTheReferenceAtEverySmallBatch) {
  XQ_REQUIRE_GPU();
  check_small_batches(GetParam(), kForceStream);
}

TEST_P(W4A16Gemv, TmaRingMatchesTheReferenceAtEverySmallBatch) {
  XQ_REQUIRE_GPU();
  check_small_batches(GetParam(), kForceTma);
}

// Each way the TMA-ring GEMV splits the weight over blocks
// (XQUANT_CUDA_W4_GEMV_TMA_SPLIT, read per op): stream-K ranges, n-block
// parts summed in a thread-block cluster where the clusters fit (through the
// workspace elsewhere), n-block parts summed through the workspace.
TEST_P(W4A16Gemv, TmaRingMatchesTheReferenceInEverySplitMode) {
  XQ_REQUIRE_GPU();
  for (const char* mode : {"streamk", "parts", "parts-global"}) {
    SCOPED_TRACE(std::string("XQUANT_CUDA_W4_GEMV_TMA_SPLIT=") + mode);
    EnvSet split("XQUANT_CUDA_W4_GEMV_TMA_SPLIT", mode);
    check_small_batches(GetParam(), kForceTma);
  }
}

// A value the switch does not know is an error naming it, not a silent default.
TEST(W4A16GemvTmaSplit, UnknownModeIsAnErrorNamingIt) {
  XQ_REQUIRE_GPU();
  int dev = 0, major = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (!xqcuda::w4_gemv_tma_supported(major)) GTEST_SKIP() << "the TMA-ring GEMV runs on sm_90 only";
  auto& P = Plugin::get();
  GemvWeight w = make_weight({XQ_DTYPE_BF16, 128, false, false, 256, 128});
  xq_qweight* qw = nullptr;
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &w.q, &qw));
  DevBuf dx(256 * 2), dy(128 * 2);
  dx.put(std::vector<uint16_t>(256, 0x3F80));  // 1.0
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = qw;
  op.src[0] = tensor2(XQ_DTYPE_BF16, 1, 256, dx.p);
  op.dst = tensor2(XQ_DTYPE_BF16, 1, 128, dy.p);
  op.i[7] = kForceTma;
  {
    EnvSet split("XQUANT_CUDA_W4_GEMV_TMA_SPLIT", "streamk");
    EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  }
  {
    EnvSet split("XQUANT_CUDA_W4_GEMV_TMA_SPLIT", "cluster");
    EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(g_last_error.find("XQUANT_CUDA_W4_GEMV_TMA_SPLIT=cluster"), std::string::npos) << g_last_error;
  }
  P.vt->qweight_release(P.state, qw);
}

std::vector<GemvCase> gemv_cases() {
  std::vector<GemvCase> v;
  for (xq_dtype dt : {XQ_DTYPE_BF16, XQ_DTYPE_F16}) {
    v.push_back({dt, 128, false, false, 256, 200});   // one split: y written directly
    v.push_back({dt, 128, false, false, 2048, 384});  // split-K, full and ragged chunk batches
    v.push_back({dt, 128, true, false, 4160, 136});   // ragged last group, asymmetric
    v.push_back({dt, 128, false, true, 4096, 256});   // act-order
    v.push_back({dt, 64, true, false, 2048, 77});
    v.push_back({dt, 32, true, true, 1024, 144});     // two scale words per chunk, act-order
    v.push_back({dt, 16, false, false, 1000, 77});    // four scale words; padding past the last group
    v.push_back({dt, 16, true, false, 2048, 256});
    v.push_back({dt, 0, false, false, 3000, 130});    // per-channel
    v.push_back({dt, 0, true, false, 512, 1000});
    v.push_back({dt, 64, true, false, 64, 5000});     // one chunk per tile
    v.push_back({dt, 128, false, true, 8192, 1024});  // many warps per tile
    v.push_back({dt, 64, false, false, 64, 38400});   // v4: whole n-blocks, two per block
    v.push_back({dt, 32, true, false, 320, 25600});   // v4: short slots at n-block ends, shared n-blocks
    v.push_back({dt, 128, true, true, 1088, 18432});  // v4: full 8-chunk slots from unaligned range starts
    v.push_back({dt, 128, false, false, 4096, 6144});  // v4: Llama-3.1-8B's q|k|v, 4 parts in a cluster (H200)
    v.push_back({dt, 128, true, false, 1024, 5000});   // v4: 4 or 6 parts a n-block, the last one short of rows
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cuda, W4A16Gemv, testing::ValuesIn(gemv_cases()), gemv_case_name);

// A wide weight, then a long-K, short-N one whose split-K reduction uses
// the counters the first left behind; both match the reference at M = 1.
TEST(W4A16GemvSplitK, CountersCarryOverBetweenWeights) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  for (int64_t force : {kForceGemv, kForceStream, kForceTma}) {
    for (GemvCase c : {GemvCase{XQ_DTYPE_BF16, 128, false, false, 512, 4096},
                       GemvCase{XQ_DTYPE_BF16, 128, false, false, 8192, 256}}) {
      GemvWeight w = make_weight(c);
      xq_qweight* qw = nullptr;
      XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &w.q, &qw));
      const int64_t M = 1, N = c.N, K = c.K;
      std::vector<float> x(M * K), xr;
      for (auto& v : x) v = uniform(-1.f, 1.f);
      auto xbits = to_half_bits(x, c.dtype, &xr);
      DevBuf dx(M * K * 2), dy(M * N * 2);
      dx.put(xbits);
      dy.poison();
      xq_op op = make_op(XQ_OP_QMATMUL);
      op.qweight = qw;
      op.src[0] = tensor2(c.dtype, M, K, dx.p);
      op.dst = tensor2(c.dtype, M, N, dy.p);
      op.i[7] = force;
      XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
      auto ybits = dy.get<uint16_t>(M * N);
      std::vector<float> y(M * N);
      for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], c.dtype);
      auto ref = ref_matmul(xr, w.dense, M, N, K, nullptr);
      EXPECT_EQ(count_nan(y), 0u) << "K=" << K << " N=" << N << " i[7]=" << force;
      EXPECT_LE(rel_error(y, ref), 1e-2) << "K=" << K << " N=" << N << " i[7]=" << force;
      P.vt->qweight_release(P.state, qw);
    }
  }
}

}  // namespace
