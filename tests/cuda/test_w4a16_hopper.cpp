// test_w4a16_hopper.cpp: the Hopper W4A16 GEMM ("cuda-w4a16-wgmma",
// plugins/cuda/src/w4a16_hopper.cu). Directly (repack + GEMM on the device,
// against a double-precision reference of the canonical weight on fresh
// random data, outputs poisoned first) for every schedule (coop, ping-pong,
// wide, auto) at M = 64, 65, 128, 255, 1024, 4096, group 64/128/per-channel,
// symmetric and asymmetric, act-order, K not a multiple of 128; the cached
// kernel parameters with new x/y buffers on every call; and through the plugin ABI with the path forced (op.i[7] = 3) and
// by default dispatch, including shapes and types the kernel does not take
// (N = 77, F16), which must fall back to the older paths and stay correct.
// The direct tests need sm_90 and a build with CUTLASS; they skip otherwise.
//
// Bound ||y-ref||/||ref|| <= 1e-2 (bf16): scales and offsets rounded to bf16
// once, products accumulated in f32, output rounded to bf16.
#include "test_host.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>
#include <tuple>
#include <vector>

#include "w4a16_hopper.hpp"

using namespace xqtest;

namespace {

struct HopperCase {
  int64_t K, N, group;  // group 0 = per-channel
  bool asym, act_order;
};

struct Weight {
  std::vector<int8_t> codes, zp;
  std::vector<float> scales, dense;  // dense: canonical dequantized [N][K]
  std::vector<int32_t> perm, g_idx;  // packed column c = canonical column perm[c]
  int64_t gs = 0, G = 0;
};

Weight make_weight(const HopperCase& c) {
  Weight w;
  const int64_t N = c.N, K = c.K;
  w.gs = c.group ? c.group : K;
  w.G = (K + w.gs - 1) / w.gs;
  w.codes.resize(N * K);
  for (auto& v : w.codes) v = static_cast<int8_t>(uniform_int(-8, 7));
  w.scales.resize(N * w.G);
  for (auto& s : w.scales) s = uniform(0.002f, 0.02f);
  if (c.asym) {
    w.zp.resize(N * w.G);
    for (auto& z : w.zp) z = static_cast<int8_t>(uniform_int(-8, 7));
  }
  std::vector<int64_t> group_of(K);
  for (int64_t k = 0; k < K; ++k) group_of[k] = k / w.gs;
  if (c.act_order) {  // GPTQ desc_act: a random column order, groups in packed order
    w.perm.resize(K);
    std::iota(w.perm.begin(), w.perm.end(), 0);
    std::shuffle(w.perm.begin(), w.perm.end(), rng());
    w.g_idx.resize(K);
    for (int64_t c2 = 0; c2 < K; ++c2) w.g_idx[w.perm[c2]] = static_cast<int32_t>(c2 / w.gs);
    for (int64_t k = 0; k < K; ++k) group_of[k] = w.g_idx[k];
  }
  w.dense.resize(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = group_of[k];
      const int z = c.asym ? w.zp[n * w.G + g] : 0;
      w.dense[n * K + k] = static_cast<float>(w.codes[n * K + k] - z) * w.scales[n * w.G + g];
    }
  return w;
}

#ifdef XQUANT_CUDA_HOPPER_W4
bool device_is_sm90() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return cudaGetLastError(), false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

template <class T>
T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  if (v.empty()) return nullptr;
  EXPECT_EQ(cudaMalloc(&p, v.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return p;
}

using xqcuda::W4HSchedule;

class W4Hopper : public testing::TestWithParam<HopperCase> {};

// Every schedule on the same x (one double reference per M).
TEST_P(W4Hopper, RepackAndGemmMatchReference) {
  if (!device_is_sm90()) GTEST_SKIP() << "needs an sm_90 GPU";
  const HopperCase c = GetParam();
  const int64_t N = c.N, K = c.K;
  Weight w = make_weight(c);
  xqcuda::W4HopperLayout L{N, K, w.gs, w.G};
  ASSERT_TRUE(xqcuda::w4h_supported(N, K, w.gs, nullptr));
  int8_t* d_codes = to_device(w.codes);
  float* d_scales = to_device(w.scales);
  int8_t* d_zp = to_device(w.zp);
  int32_t* d_perm = to_device(w.perm);
  void *qw = nullptr, *s = nullptr, *z = nullptr;
  ASSERT_EQ(cudaMalloc(&qw, xqcuda::w4h_weight_bytes(L)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&s, N * w.G * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&z, N * w.G * 2), cudaSuccess);
  ASSERT_EQ(xqcuda::w4h_pack(L, d_codes, d_perm, qw, nullptr), cudaSuccess);
  ASSERT_EQ(xqcuda::w4h_pack_scales(L, d_scales, d_zp, s, z, nullptr), cudaSuccess);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);

  for (int64_t M : {int64_t{1}, int64_t{16}, int64_t{17}, int64_t{32}, int64_t{64}, int64_t{65}, int64_t{128},
                    int64_t{255}, int64_t{1024}, int64_t{4096}}) {
    if (M * N * K > int64_t{1024} * 4096 * 384) continue;  // keep the double reference short
    std::vector<float> x(M * K), xr;
    for (auto& v : x) v = uniform(-1.f, 1.f);
    auto xbits = to_half_bits(x, XQ_DTYPE_BF16, &xr);
    std::vector<uint16_t> packed_x(xbits.size());  // the caller gathers act-order columns
    for (int64_t m = 0; m < M; ++m)
      for (int64_t col = 0; col < K; ++col) packed_x[m * K + col] = xbits[m * K + (w.perm.empty() ? col : w.perm[col])];
    uint16_t* d_x = to_device(packed_x);
    const auto ref = ref_matmul(xr, w.dense, M, N, K, nullptr);
    void* d_y = nullptr;
    ASSERT_EQ(cudaMalloc(&d_y, M * N * 2), cudaSuccess);
    for (W4HSchedule schedule : {W4HSchedule::Coop, W4HSchedule::Pingpong, W4HSchedule::Wide, W4HSchedule::Narrow,
                                 W4HSchedule::K128, W4HSchedule::Auto}) {
      // Above their token tiles they stand for Coop, which ran already.
      const bool narrow = schedule == W4HSchedule::Narrow || schedule == W4HSchedule::K128;
      if (narrow && M > xqcuda::kNarrowTokenTileMaxM) continue;
      const std::string what = std::string("M=") + std::to_string(M) + " schedule " +
                               xqcuda::w4h_schedule_name(xqcuda::w4h_resolve(L, M, sms, schedule));
      ASSERT_EQ(cudaMemset(d_y, 0xFF, M * N * 2), cudaSuccess);  // NaN in bf16
      const size_t ws_bytes = xqcuda::w4h_workspace_bytes(L, M, sms, schedule);
      void* ws = nullptr;
      ASSERT_EQ(cudaMalloc(&ws, ws_bytes ? ws_bytes : 16), cudaSuccess);
      ASSERT_EQ(xqcuda::w4h_gemm(L, qw, s, z, d_x, M, d_y, nullptr, false, ws, ws_bytes, sms, nullptr, schedule),
                cudaSuccess)
          << what;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
      std::vector<uint16_t> ybits(M * N);
      ASSERT_EQ(cudaMemcpy(ybits.data(), d_y, M * N * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      std::vector<float> y(M * N);
      for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], XQ_DTYPE_BF16);
      EXPECT_EQ(count_nan(y), 0u) << what << ": unwritten (poisoned) outputs";
      const double err = rel_error(y, ref);
      EXPECT_LE(err, 1e-2) << what;
      RecordProperty("rel_err_M" + std::to_string(M) + "_" + xqcuda::w4h_schedule_name(schedule), std::to_string(err));
      cudaFree(ws);
    }
    cudaFree(d_x);
    cudaFree(d_y);
  }
  for (void* p : {static_cast<void*>(d_codes), static_cast<void*>(d_scales), static_cast<void*>(d_zp),
                  static_cast<void*>(d_perm), qw, s, z})
    if (p) cudaFree(p);
}

std::string hopper_case_name(const testing::TestParamInfo<HopperCase>& i) {
  const HopperCase& c = i.param;
  return "K" + std::to_string(c.K) + "_N" + std::to_string(c.N) + "_g" + std::to_string(c.group) +
         (c.asym ? "_asym" : "_sym") + (c.act_order ? "_actorder" : "");
}

INSTANTIATE_TEST_SUITE_P(Cuda, W4Hopper,
                         testing::Values(HopperCase{4096, 384, 128, false, false},
                                         HopperCase{4096, 256, 128, true, true},
                                         HopperCase{4160, 128, 128, true, false},  // K % 128 = 64
                                         HopperCase{2048, 512, 0, false, false},
                                         HopperCase{1024, 256, 64, true, true}),
                         hopper_case_name);

// The cached kernel parameters hold placeholder x/y addresses that every call
// replaces: calls alternating between buffers (and sizes of M) must each read
// their own x and write their own y, never a previous call's.
TEST(W4HopperPlan, CachedParamsFollowNewBuffers) {
  if (!device_is_sm90()) GTEST_SKIP() << "needs an sm_90 GPU";
  const HopperCase c{2048, 256, 128, true, false};
  const int64_t N = c.N, K = c.K;
  Weight w = make_weight(c);
  xqcuda::W4HopperLayout L{N, K, w.gs, w.G};
  int8_t* d_codes = to_device(w.codes);
  float* d_scales = to_device(w.scales);
  int8_t* d_zp = to_device(w.zp);
  void *qw = nullptr, *s = nullptr, *z = nullptr, *ws = nullptr;
  ASSERT_EQ(cudaMalloc(&qw, xqcuda::w4h_weight_bytes(L)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&s, N * w.G * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&z, N * w.G * 2), cudaSuccess);
  ASSERT_EQ(xqcuda::w4h_pack(L, d_codes, nullptr, qw, nullptr), cudaSuccess);
  ASSERT_EQ(xqcuda::w4h_pack_scales(L, d_scales, d_zp, s, z, nullptr), cudaSuccess);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const std::vector<W4HSchedule> schedules{W4HSchedule::Coop, W4HSchedule::Pingpong, W4HSchedule::Wide,
                                           W4HSchedule::Narrow, W4HSchedule::K128};
  // Each schedule at two sizes of M inside its own token tiles.
  auto sizes = [](W4HSchedule sc) {
    if (sc == W4HSchedule::Narrow || sc == W4HSchedule::K128) return std::vector<int64_t>{13, 32};
    return std::vector<int64_t>{64, 200};
  };
  size_t ws_bytes = 0;
  for (W4HSchedule sc : schedules)
    for (int64_t M : sizes(sc)) ws_bytes = std::max(ws_bytes, xqcuda::w4h_workspace_bytes(L, M, sms, sc));
  ASSERT_EQ(cudaMalloc(&ws, ws_bytes ? ws_bytes : 16), cudaSuccess);
  for (W4HSchedule sc : schedules)
    for (int round = 0; round < 3; ++round)
      for (int64_t M : sizes(sc)) {
        std::vector<float> x(M * K), xr;
        for (auto& v : x) v = uniform(-1.f, 1.f);
        auto xbits = to_half_bits(x, XQ_DTYPE_BF16, &xr);
        uint16_t* d_x = to_device(xbits);  // a new address every call
        void* d_y = nullptr;
        ASSERT_EQ(cudaMalloc(&d_y, M * N * 2), cudaSuccess);
        ASSERT_EQ(cudaMemset(d_y, 0xFF, M * N * 2), cudaSuccess);
        ASSERT_EQ(xqcuda::w4h_gemm(L, qw, s, z, d_x, M, d_y, nullptr, false, ws, ws_bytes, sms, nullptr, sc),
                  cudaSuccess);
        std::vector<uint16_t> ybits(M * N);
        ASSERT_EQ(cudaMemcpy(ybits.data(), d_y, M * N * 2, cudaMemcpyDeviceToHost), cudaSuccess);
        std::vector<float> y(M * N);
        for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], XQ_DTYPE_BF16);
        EXPECT_EQ(count_nan(y), 0u) << xqcuda::w4h_schedule_name(sc) << " M=" << M << " round " << round;
        EXPECT_LE(rel_error(y, ref_matmul(xr, w.dense, M, N, K, nullptr)), 1e-2)
            << xqcuda::w4h_schedule_name(sc) << " M=" << M << " round " << round;
        cudaFree(d_x);
        cudaFree(d_y);
      }
  for (void* p : {static_cast<void*>(d_codes), static_cast<void*>(d_scales), static_cast<void*>(d_zp), qw, s, z, ws})
    if (p) cudaFree(p);
}

// Auto as measured on an H200 (w4h_resolve): the four benchmark shapes' winners.
TEST(W4HopperPlan, AutoScheduleByShape) {
  using xqcuda::w4h_resolve;
  const xqcuda::W4HopperLayout n28672{28672, 8192, 128, 64}, n14336{14336, 4096, 128, 32}, n4096{4096, 4096, 128, 32};
  const W4HSchedule A = W4HSchedule::Auto;
  EXPECT_EQ(w4h_resolve(n28672, 64, 132, A), W4HSchedule::Pingpong);
  EXPECT_EQ(w4h_resolve(n14336, 64, 132, A), W4HSchedule::Pingpong);
  EXPECT_EQ(w4h_resolve(n4096, 64, 132, A), W4HSchedule::Coop);  // 32 tiles: stream-K spreads K
  EXPECT_EQ(w4h_resolve(n28672, 128, 132, A), W4HSchedule::Coop);
  EXPECT_EQ(w4h_resolve(n28672, 256, 132, A), W4HSchedule::Wide);
  EXPECT_EQ(w4h_resolve(n4096, 256, 132, A), W4HSchedule::Coop);
  EXPECT_EQ(w4h_resolve(n4096, 1024, 132, A), W4HSchedule::Wide);
  EXPECT_EQ(w4h_resolve(n4096, 4096, 132, A), W4HSchedule::Wide);
  EXPECT_EQ(w4h_resolve(n4096, 64, 132, W4HSchedule::Wide), W4HSchedule::Wide);  // forced stays
  // Group 64 cannot take the 64-token ping-pong's K step of 128.
  const xqcuda::W4HopperLayout g64{28672, 8192, 64, 128};
  EXPECT_EQ(w4h_resolve(g64, 64, 132, A), W4HSchedule::Coop);
  EXPECT_EQ(w4h_resolve(g64, 64, 132, W4HSchedule::Pingpong), W4HSchedule::Coop);
  EXPECT_EQ(w4h_resolve(g64, 128, 132, W4HSchedule::Pingpong), W4HSchedule::Pingpong);  // K step 64 there
  // The narrow tiles end at 32 tokens; K128's K step needs groups of 128 too.
  EXPECT_EQ(w4h_resolve(n4096, 32, 132, W4HSchedule::Narrow), W4HSchedule::Narrow);
  EXPECT_EQ(w4h_resolve(n4096, 33, 132, W4HSchedule::Narrow), W4HSchedule::Coop);
  EXPECT_EQ(w4h_resolve(n4096, 32, 132, W4HSchedule::K128), W4HSchedule::K128);
  EXPECT_EQ(w4h_resolve(n4096, 33, 132, W4HSchedule::K128), W4HSchedule::Coop);
  EXPECT_EQ(w4h_resolve(g64, 16, 132, W4HSchedule::K128), W4HSchedule::Narrow);
  // Up to 32 rows auto takes the K-128 tiles (Narrow for group 64).
  EXPECT_EQ(w4h_resolve(n28672, 13, 132, A), W4HSchedule::K128);
  EXPECT_EQ(w4h_resolve(n4096, 32, 132, A), W4HSchedule::K128);
  EXPECT_EQ(w4h_resolve(g64, 32, 132, A), W4HSchedule::Narrow);
}
#endif  // XQUANT_CUDA_HOPPER_W4

// Through the ABI: forced (3) and default dispatch; shapes/types the Hopper
// kernel refuses run on the older paths and must still be right.
struct AbiCase {
  HopperCase shape;
  xq_dtype dtype;
};

// The canonical weight `w` of case `c` prepared by the plugin (qweight_prepare).
xq_qweight* prepare_through_abi(const HopperCase& c, Weight& w) {
  auto& P = Plugin::get();
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = 4;
  q.symmetric = c.asym ? 0 : 1;
  q.strategy = c.group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = c.N;
  q.cols = c.K;
  q.group_size = w.gs;
  q.n_groups = w.G;
  q.codes = w.codes.data();
  q.scales = w.scales.data();
  q.zero_points = c.asym ? w.zp.data() : nullptr;
  q.g_idx = c.act_order ? w.g_idx.data() : nullptr;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_NONE;
  xq_qweight* qw = nullptr;
  EXPECT_EQ(P.vt->qweight_prepare(P.state, &q, &qw), XQ_OK) << g_last_error;
  return qw;
}

class W4HopperAbi : public testing::TestWithParam<AbiCase> {};

TEST_P(W4HopperAbi, ForcedAndDefaultDispatchMatchReference) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const AbiCase a = GetParam();
  const HopperCase& c = a.shape;
  const int64_t N = c.N, K = c.K;
  Weight w = make_weight(c);
  xq_qweight* qw = prepare_through_abi(c, w);
  ASSERT_NE(qw, nullptr);
  const double bound = a.dtype == XQ_DTYPE_BF16 ? 1e-2 : 3e-3;
  struct Run {
    int64_t M, force;
    bool bias;
  };
  for (const Run& r : {Run{64, 3, true}, Run{65, 3, false}, Run{255, 0, true}, Run{16, 3, false}}) {
    const int64_t M = r.M;
    std::vector<float> x(M * K), xr, bias(N);
    for (auto& v : x) v = uniform(-1.f, 1.f);
    for (auto& b : bias) b = uniform(-0.5f, 0.5f);
    auto xbits = to_half_bits(x, a.dtype, &xr);
    DevBuf dx(M * K * 2), dy(M * N * 2), db(N * 4);
    dx.put(xbits);
    db.put(bias);
    dy.poison();
    xq_op op = make_op(XQ_OP_QMATMUL);
    op.qweight = qw;
    op.src[0] = tensor2(a.dtype, M, K, dx.p);
    if (r.bias) op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
    op.dst = tensor2(a.dtype, M, N, dy.p);
    op.i[7] = r.force;
    ASSERT_EQ(P.vt->supports_op(P.state, &op), 1u);
    XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
    auto ybits = dy.get<uint16_t>(M * N);
    std::vector<float> y(M * N);
    for (size_t i = 0; i < y.size(); ++i) y[i] = half_bits_to_f32(ybits[i], a.dtype);
    auto ref = ref_matmul(xr, w.dense, M, N, K, r.bias ? &bias : nullptr);
    EXPECT_EQ(count_nan(y), 0u) << "M=" << M << " force=" << r.force << ": unwritten (poisoned) outputs";
    EXPECT_LE(rel_error(y, ref), bound) << "M=" << M << " force=" << r.force;
  }
  P.vt->qweight_release(P.state, qw);
}

std::string abi_case_name(const testing::TestParamInfo<AbiCase>& i) {
  const HopperCase& c = i.param.shape;
  return std::string(i.param.dtype == XQ_DTYPE_BF16 ? "bf16" : "f16") + "_K" + std::to_string(c.K) + "_N" +
         std::to_string(c.N) + "_g" + std::to_string(c.group) + (c.asym ? "_asym" : "_sym") +
         (c.act_order ? "_actorder" : "");
}

INSTANTIATE_TEST_SUITE_P(Cuda, W4HopperAbi,
                         testing::Values(AbiCase{{4096, 384, 128, false, false}, XQ_DTYPE_BF16},
                                         AbiCase{{4096, 256, 128, true, true}, XQ_DTYPE_BF16},
                                         AbiCase{{1000, 77, 128, true, false}, XQ_DTYPE_BF16},  // refused: fallback
                                         AbiCase{{4096, 256, 32, false, false}, XQ_DTYPE_BF16},  // group 32: fallback
                                         AbiCase{{4096, 256, 128, true, false}, XQ_DTYPE_F16}),  // f16: fallback
                         abi_case_name);

// QMATMUL output bits of `qw` at M rows of `x` with op.i[7] = `force`.
std::vector<uint16_t> qmatmul_bits(xq_qweight* qw, const std::vector<uint16_t>& x, int64_t M, int64_t N, int64_t K,
                                   int64_t force) {
  auto& P = Plugin::get();
  DevBuf dx(M * K * 2), dy(M * N * 2);
  dx.put(std::vector<uint16_t>(x.begin(), x.begin() + M * K));
  dy.poison();
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = qw;
  op.src[0] = tensor2(XQ_DTYPE_BF16, M, K, dx.p);
  op.dst = tensor2(XQ_DTYPE_BF16, M, N, dy.p);
  op.i[7] = force;
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  return dy.get<uint16_t>(M * N);
}

// The default dispatch hands W4A16 products to the Hopper GEMM from 17 rows on
// weights of 8192 rows and more, from 33 on the others (default_min_m in
// plugins/cuda/src/provider_w4_hopper.cpp); below that the TMA-ring GEMV (up
// to 12 rows) or the mma.sync GEMM. Its bytes equal the expected kernel's,
// forced (op.i[7] = 3 Hopper, 1 mma.sync, 7 GEMV), on the same x, and differ
// from another kernel's in every case (else the case could not tell).
TEST(W4HopperDispatch, TallWeightsTakeTheHopperGemmFrom17RowsOthersFrom33) {
  XQ_REQUIRE_GPU();
#ifdef XQUANT_CUDA_HOPPER_W4
  if (!device_is_sm90()) GTEST_SKIP() << "needs an sm_90 GPU";
#else
  GTEST_SKIP() << "a build without CUTLASS has no Hopper GEMM";
#endif
  // K 4096: 32 groups, so the kernels' sums of the groups' products round
  // differently (with 4 groups of exact products their bytes came out equal).
  const int64_t K = 4096;
  constexpr int64_t kHopper = 3, kMma = 1, kGemv = 7;
  for (const auto& [N, M, expected] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {8192, 12, kGemv}, {8192, 16, kMma}, {8192, 17, kHopper}, {8192, 24, kHopper}, {8192, 32, kHopper},
           {4096, 16, kMma}, {4096, 32, kMma}, {4096, 33, kHopper}, {4096, 48, kHopper}}) {
    SCOPED_TRACE("N " + std::to_string(N) + ", M " + std::to_string(M) + ", expected op.i[7] = " +
                 std::to_string(expected));
    const HopperCase c{K, N, 128, false, false};
    Weight w = make_weight(c);
    xq_qweight* qw = prepare_through_abi(c, w);
    ASSERT_NE(qw, nullptr);
    std::vector<float> xf(M * K), xr;
    for (auto& v : xf) v = uniform(-1.f, 1.f);
    const auto x = to_half_bits(xf, XQ_DTYPE_BF16, &xr);
    const auto want = qmatmul_bits(qw, x, M, N, K, expected),
               other = qmatmul_bits(qw, x, M, N, K, expected == kHopper ? kMma : kHopper),
               chosen = qmatmul_bits(qw, x, M, N, K, 0);
    Plugin::get().vt->qweight_release(Plugin::get().state, qw);
    ASSERT_NE(want, other) << "two kernels gave the same bytes: this case cannot tell them apart";
    EXPECT_EQ(chosen, want) << "the default did not take the expected kernel";
  }
}

}  // namespace
