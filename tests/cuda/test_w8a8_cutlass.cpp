// test_w8a8_cutlass.cpp: the W8A8 GEMM routes (plugins/cuda/src/w8a8_route.cpp)
// forced one at a time through XQUANT_CUDA_W8A8_GEMM: the CUTLASS sm_90a
// kernels with the scaling fused into the epilogue, and cuBLASLt + our
// scaling pass. Each against a double reference on fresh random codes:
// INT8 and FP8 E4M3, per-token x per-channel and per-tensor scales, with and
// without bias, BF16 and F16 out, M = 1, 3, 17, 64, 255, 1024 (every per-M
// tile configuration and partial tiles), N a multiple of 16 but not of the
// 64/128 tile, outputs poisoned before each run. Then the W8A8 QMATMUL
// (activation quantization + GEMM) on both routes against each other, and a
// forced CUTLASS run on a problem it cannot take is a clear error that
// leaves the output untouched.
//
// The CUTLASS cases run on sm_90 with a build that has the CUTLASS kernels
// (XQUANT_CUDA_CUTLASS); elsewhere they skip and the forced route must fail.
//
// W8A8Configs.*: every CUTLASS kernel configuration forced by name
// (XQUANT_CUDA_W8A8_CONFIG) against the same reference, the configuration
// table and auto's picks (no GPU needed), and forced names that cannot run.
//
// Bounds: ||out-ref||/||ref|| <= 1e-2 (BF16 out) or 3e-3 (F16 out): INT32
// accumulation is exact, FP8 accumulates in f32; the rest is the output
// rounding.
#include <xquant/sdk/fp8.hpp>

#include <cstdlib>
#include <string>

#include "test_host.hpp"

#ifdef XQUANT_CUDA_CUTLASS
#include "cutlass_w8a8.hpp"  // the configuration table (xquant_cuda_core's sources)
#endif

using namespace xqtest;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_w8a8_cutlass {

namespace {

// Sets XQUANT_CUDA_W8A8_GEMM for the scope (the provider reads it per call).
struct ForceRoute {
  explicit ForceRoute(const char* route) { setenv("XQUANT_CUDA_W8A8_GEMM", route, 1); }
  ~ForceRoute() { unsetenv("XQUANT_CUDA_W8A8_GEMM"); }
};

bool cutlass_here() {
#ifdef XQUANT_CUDA_CUTLASS
  return Plugin::get().why.find("(sm_90,") != std::string::npos;
#else
  return false;
#endif
}

// Random codes of type t (I8 in [-127, 127], E4M3 finite in [-448, 448]):
// the bytes to upload and their values.
void random_codes(xq_dtype t, size_t n, std::vector<uint8_t>* bytes, std::vector<float>* vals) {
  bytes->resize(n);
  vals->resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == XQ_DTYPE_I8) {
      const int8_t c = static_cast<int8_t>(uniform_int(-127, 127));
      (*bytes)[i] = static_cast<uint8_t>(c);
      (*vals)[i] = c;
    } else {
      const uint8_t c = xquant::sdk::f32_to_e4m3(uniform(-448.f, 448.f));
      (*bytes)[i] = c;
      (*vals)[i] = xquant::sdk::e4m3_to_f32(c);
    }
  }
}

// The BF16/F16 output as floats.
std::vector<float> read_out(DevBuf& d, xq_dtype t, size_t n) {
  auto bits = d.get<uint16_t>(n);
  std::vector<float> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = half_bits_to_f32(bits[i], t);
  return y;
}

double out_bound(xq_dtype y) { return y == XQ_DTYPE_BF16 ? 1e-2 : 3e-3; }

}  // namespace

TEST(W8A8Routes, MatmulBothRoutesAgainstReference) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  std::vector<const char*> routes = {"cublaslt"};
  if (cutlass_here()) routes.push_back("cutlass");
  const int64_t K = 512, N = 208;  // N = 13 x 16: partial 64- and 128-wide tiles
  for (xq_dtype t : {XQ_DTYPE_I8, XQ_DTYPE_F8_E4M3}) {
    std::vector<uint8_t> wbytes;
    std::vector<float> wv;
    random_codes(t, N * K, &wbytes, &wv);
    DevBuf dw(wbytes.size());
    dw.put(wbytes);
    for (int64_t M : {1, 3, 17, 64, 255, 1024}) {
      std::vector<uint8_t> xbytes;
      std::vector<float> xv;
      random_codes(t, M * K, &xbytes, &xv);
      const std::vector<double> acc = ref_matmul(xv, wv, M, N, K, nullptr);
      std::vector<float> scales(M + N), bias(N);
      for (auto& s : scales) s = uniform(1e-4f, 2e-3f);
      for (auto& b : bias) b = uniform(-0.5f, 0.5f);
      const float ftx = 1.5e-3f, ftw = 1.25e-3f;
      DevBuf dx(xbytes.size()), ds(scales.size() * 4), db(N * 4), dy(M * N * 2);
      dx.put(xbytes);
      ds.put(scales);
      db.put(bias);
      for (int vec : {0, 1})
        for (bool with_bias : {false, true})
          for (xq_dtype y_t : {XQ_DTYPE_BF16, XQ_DTYPE_F16}) {
            std::vector<double> ref(acc.size());
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                const double s = vec ? static_cast<double>(scales[m]) * scales[M + n] : static_cast<double>(ftx) * ftw;
                ref[m * N + n] = acc[m * N + n] * s + (with_bias ? bias[n] : 0.0);
              }
            for (const char* route : routes) {
              // The cuBLASLt route's FP8 vector-scale fallback with F16 out is
              // covered too: unscaled E4M3 sums (up to 448^2 K) overflowed F16
              // (inf, H200 2026-11-30) until it took them in F32.
              ForceRoute force(route);
              dy.poison();
              xq_op op = make_op(XQ_OP_MATMUL);
              op.src[0] = tensor2(t, M, K, dx.p);
              op.src[1] = tensor2(t, N, K, dw.p);
              if (with_bias) op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
              op.dst = tensor2(y_t, M, N, dy.p);
              if (vec) {
                op.i[0] = 1;
                op.src[3] = tensor1(XQ_DTYPE_F32, M + N, ds.p);
              } else {
                op.f[0] = ftx;
                op.f[1] = ftw;
              }
              const std::string what = std::string("route=") + route + " dtype=" + std::to_string(t) +
                                       " vec=" + std::to_string(vec) + " bias=" + std::to_string(with_bias) +
                                       " out=" + std::to_string(y_t) + " M=" + std::to_string(M);
              ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << what << ": " << g_last_error;
              auto y = read_out(dy, y_t, M * N);
              EXPECT_EQ(count_nan(y), 0u) << what;
              EXPECT_LE(rel_error(y, ref), out_bound(y_t)) << what;
            }
          }
    }
  }
}

TEST(W8A8Routes, QmatmulCutlassMatchesCublasLt) {
  XQ_REQUIRE_GPU();
  if (!cutlass_here()) GTEST_SKIP() << "no CUTLASS W8A8 GEMM here (needs sm_90 and a build with CUTLASS)";
  auto& P = Plugin::get();
  const int64_t N = 400, K = 1024;
  std::vector<int8_t> codes(N * K);
  for (auto& v : codes) v = static_cast<int8_t>(uniform_int(-127, 127));
  std::vector<float> scales(N);
  for (auto& s : scales) s = uniform(0.001f, 0.01f);
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = 8;
  q.symmetric = 1;
  q.strategy = XQ_STRATEGY_CHANNEL;
  q.rows = N;
  q.cols = K;
  q.group_size = K;
  q.n_groups = 1;
  q.codes = codes.data();
  q.scales = scales.data();
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
  q.act_bits = 8;
  xq_qweight* qw = nullptr;
  XQ_OK_OR_FAIL(P.vt->qweight_prepare(P.state, &q, &qw));
  for (int64_t M : {1, 17, 255}) {
    std::vector<float> x(M * K), bias(N);
    for (auto& v : x) v = uniform(-2.f, 2.f);
    for (auto& b : bias) b = uniform(-0.5f, 0.5f);
    std::vector<float> xr;
    const auto xb = to_half_bits(x, XQ_DTYPE_BF16, &xr);
    DevBuf dx(xb.size() * 2), db(N * 4), dy_lt(M * N * 2), dy_cl(M * N * 2);
    dx.put(xb);
    db.put(bias);
    std::vector<float> got[2];
    int i = 0;
    for (const char* route : {"cublaslt", "cutlass"}) {
      ForceRoute force(route);
      DevBuf& dy = i == 0 ? dy_lt : dy_cl;
      dy.poison();
      xq_op op = make_op(XQ_OP_QMATMUL);
      op.qweight = qw;
      op.src[0] = tensor2(XQ_DTYPE_BF16, M, K, dx.p);
      op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
      op.dst = tensor2(XQ_DTYPE_BF16, M, N, dy.p);
      ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << route << " M=" << M << ": " << g_last_error;
      got[i] = read_out(dy, XQ_DTYPE_BF16, M * N);
      EXPECT_EQ(count_nan(got[i]), 0u) << route << " M=" << M;
      ++i;
    }
    // Same quantized activations, exact INT32 sums: the routes differ only in
    // the f32 order of the scaling and the BF16 rounding (<= 1 ulp, 2^-8).
    std::vector<double> ref(got[0].begin(), got[0].end());
    EXPECT_LE(rel_error(got[1], ref), 5e-3) << "M=" << M;
  }
  P.vt->qweight_release(P.state, qw);
}

TEST(W8A8Routes, ForcedCutlassRefusesWhatItCannotTake) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  // F32 output: the CUTLASS kernels write BF16/F16 only (and off sm_90 or
  // without CUTLASS every problem is refused).
  const int64_t M = 5, K = 64, N = 32;
  std::vector<uint8_t> xb(M * K, 1), wb(N * K, 1);
  DevBuf dx(xb.size()), dw(wb.size()), dy(M * N * 4);
  dx.put(xb);
  dw.put(wb);
  dy.poison();
  xq_op op = make_op(XQ_OP_MATMUL);
  op.src[0] = tensor2(XQ_DTYPE_I8, M, K, dx.p);
  op.src[1] = tensor2(XQ_DTYPE_I8, N, K, dw.p);
  op.dst = tensor2(XQ_DTYPE_F32, M, N, dy.p);
  op.f[0] = 1.0;
  op.f[1] = 1.0;
  {
    ForceRoute force("cutlass");
    EXPECT_NE(P.vt->run_op(P.state, &op), XQ_OK);
    EXPECT_NE(g_last_error.find("XQUANT_CUDA_W8A8_GEMM=cutlass"), std::string::npos) << g_last_error;
    auto y = dy.get<uint32_t>(M * N);
    size_t touched = 0;
    for (uint32_t v : y) touched += v != 0xFFFFFFFFu;
    EXPECT_EQ(touched, 0u) << "the refused GEMM wrote its output";
  }
  {
    ForceRoute force("sideways");
    EXPECT_NE(P.vt->run_op(P.state, &op), XQ_OK);
    EXPECT_NE(g_last_error.find("expected auto, cutlass or cublaslt"), std::string::npos) << g_last_error;
  }
  // The default route takes it (cuBLASLt): 64 x 1 x 1 in every element.
  XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
  auto y = dy.get<float>(M * N);
  for (float v : y) EXPECT_EQ(v, 64.f);
}

namespace {

// Sets XQUANT_CUDA_W8A8_CONFIG for the scope (read per call).
struct ForceConfig {
  explicit ForceConfig(const char* name) { setenv("XQUANT_CUDA_W8A8_CONFIG", name, 1); }
  ~ForceConfig() { unsetenv("XQUANT_CUDA_W8A8_CONFIG"); }
};

}  // namespace

#ifdef XQUANT_CUDA_CUTLASS
namespace {

// A problem for the configuration table (no GPU needed: nothing runs).
xqcuda::ScaledMM problem(xqcuda::DType ab, xqcuda::DType y, int64_t M, int64_t N, int64_t K, bool row_wise) {
  static float scales[2];
  xqcuda::ScaledMM p;
  p.ab = ab;
  p.y_type = y;
  p.M = M;
  p.N = N;
  p.K = K;
  p.x = p.w = p.y = reinterpret_cast<void*>(uintptr_t{1} << 20);  // 16-byte aligned, never dereferenced
  if (row_wise) p.sx = p.sw = scales;
  return p;
}

}  // namespace

// The configuration names round-trip, each configuration takes only its
// input type (and F16 output only where instantiated), and auto never hands
// a problem to a configuration that cannot run it, nor FP8 fast accumulation.
TEST(W8A8Configs, NamesAndAutoPicks) {
  using namespace xqcuda;
  for (int i = 0; i < static_cast<int>(W8Config::Count); ++i) {
    const W8ConfigInfo& c = w8_config_info(static_cast<W8Config>(i));
    EXPECT_EQ(static_cast<int>(c.id), i);
    W8Config back{};
    ASSERT_TRUE(w8_config_from_name(c.name, &back)) << c.name;
    EXPECT_EQ(back, c.id) << c.name;
    EXPECT_EQ(std::string(c.name).substr(0, 2), c.ab == DType::I8 ? "i8" : "f8") << c.name;
    const DType other = c.ab == DType::I8 ? DType::F8E4M3 : DType::I8;
    EXPECT_FALSE(w8_config_takes(c.id, problem(other, DType::BF16, 64, 256, 512, true))) << c.name;
    EXPECT_TRUE(w8_config_takes(c.id, problem(c.ab, DType::BF16, 64, 256, 512, true))) << c.name;
    EXPECT_EQ(w8_config_takes(c.id, problem(c.ab, DType::F16, 64, 256, 512, true)), c.f16_out) << c.name;
  }
  W8Config none{};
  EXPECT_FALSE(w8_config_from_name("i8_999x1", &none));
  for (DType ab : {DType::I8, DType::F8E4M3})
    for (DType y : {DType::BF16, DType::F16})
      for (bool row_wise : {false, true})
        for (int64_t M : {1, 16, 64, 65, 128, 129, 256, 1024, 4096})
          for (auto [K, N] : {std::pair<int64_t, int64_t>{4096, 4096}, {4096, 14336}, {14336, 4096}, {8192, 28672},
                              {512, 208}}) {
            const ScaledMM p = problem(ab, y, M, N, K, row_wise);
            W8Config c{};
            if (!cutlass_scaled_mm_auto(p, &c)) continue;
            const std::string what = std::string(w8_config_info(c).name) + " M=" + std::to_string(M) +
                                     " N=" + std::to_string(N) + " K=" + std::to_string(K);
            EXPECT_TRUE(w8_config_takes(c, p)) << what;
            EXPECT_FALSE(w8_config_info(c).fast_accum) << what;
          }
  // A problem CUTLASS cannot take (K not a multiple of 16) is never auto's.
  W8Config c{};
  EXPECT_FALSE(cutlass_scaled_mm_auto(problem(DType::I8, DType::BF16, 64, 256, 520 + 4, true), &c));
  // The measured picks (H200 sweep in docs/cuda.md), BF16 out, row-wise.
  struct Pick {
    DType ab;
    int64_t M, K, N;
    const char* want;  // null: cuBLASLt
  };
  for (const Pick& k : {Pick{DType::I8, 16, 14336, 4096, "i8_64x64_c1x8"},
                        Pick{DType::I8, 128, 4096, 4096, "i8_64x128_c2x1_pp"},
                        Pick{DType::I8, 128, 8192, 28672, "i8_128x128_c1x1_sk"},
                        Pick{DType::I8, 256, 14336, 4096, "i8_64x128_c2x1_pp"},
                        Pick{DType::I8, 256, 4096, 14336, "i8_128x128_c2x1_pp"},
                        Pick{DType::I8, 1024, 4096, 4096, "i8_128x128_c2x1_pp"},
                        Pick{DType::I8, 4096, 8192, 28672, "i8_128x256_c2x1_coop"},
                        Pick{DType::I8, 4096, 14336, 4096, "i8_256x128_c2x1_coop"},
                        Pick{DType::I8, 4096, 4096, 14336, "i8_128x128_c2x1_pp"},
                        Pick{DType::F8E4M3, 16, 8192, 28672, nullptr},
                        Pick{DType::F8E4M3, 128, 4096, 14336, "f8_128x128_c1x1_sk"},
                        Pick{DType::F8E4M3, 128, 14336, 4096, nullptr},
                        Pick{DType::F8E4M3, 1024, 8192, 28672, "f8_128x128_c2x1_coop"},
                        Pick{DType::F8E4M3, 4096, 8192, 28672, nullptr}}) {
    const std::string what = "M=" + std::to_string(k.M) + " K=" + std::to_string(k.K) + " N=" + std::to_string(k.N);
    const bool took = cutlass_scaled_mm_auto(problem(k.ab, DType::BF16, k.M, k.N, k.K, true), &c);
    EXPECT_EQ(took, k.want != nullptr) << what;
    if (took && k.want) {
      EXPECT_STREQ(w8_config_info(c).name, k.want) << what;
    }
  }
  // FP8 per-tensor stays on cuBLASLt (its alpha takes the scales in one pass).
  EXPECT_FALSE(cutlass_scaled_mm_auto(problem(DType::F8E4M3, DType::BF16, 1024, 28672, 8192, false), &c));
}
#endif

// Every kernel configuration forced by name (XQUANT_CUDA_W8A8_CONFIG) on the
// same random codes: against the double reference, M from 1 to 1024 (odd M,
// partial tiles), N = 272 (not a multiple of 64/128/256), K = 2048 (16 k-tiles
// of 128: the stream-K configurations split them across CTAs, since a few
// output tiles leave most SMs idle), per-token x per-channel scales with bias
// and per-tensor without, BF16 out and F16 where the configuration has it,
// poisoned outputs. The stream-K ones run twice: the same bytes (INT32
// partials add exactly; FP8 reduces in a fixed order).
TEST(W8A8Configs, EveryConfigAgainstReference) {
  XQ_REQUIRE_GPU();
  if (!cutlass_here()) GTEST_SKIP() << "no CUTLASS W8A8 GEMM here (needs sm_90 and a build with CUTLASS)";
#ifdef XQUANT_CUDA_CUTLASS
  using namespace xqcuda;
  auto& P = Plugin::get();
  const int64_t K = 2048, N = 272;
  for (xq_dtype t : {XQ_DTYPE_I8, XQ_DTYPE_F8_E4M3}) {
    const DType ab = t == XQ_DTYPE_I8 ? DType::I8 : DType::F8E4M3;
    std::vector<uint8_t> wbytes;
    std::vector<float> wv;
    random_codes(t, N * K, &wbytes, &wv);
    DevBuf dw(wbytes.size());
    dw.put(wbytes);
    for (int64_t M : {1, 5, 64, 129, 255, 1024}) {
      std::vector<uint8_t> xbytes;
      std::vector<float> xv;
      random_codes(t, M * K, &xbytes, &xv);
      const std::vector<double> acc = ref_matmul(xv, wv, M, N, K, nullptr);
      std::vector<float> scales(M + N), bias(N);
      for (auto& s : scales) s = uniform(1e-5f, 2e-4f);
      for (auto& b : bias) b = uniform(-0.5f, 0.5f);
      const float ftx = 1.5e-4f, ftw = 1.25e-4f;
      DevBuf dx(xbytes.size()), ds(scales.size() * 4), db(N * 4), dy(M * N * 2), dy2(M * N * 2);
      dx.put(xbytes);
      ds.put(scales);
      db.put(bias);
      for (int i = 0; i < static_cast<int>(W8Config::Count); ++i) {
        const W8ConfigInfo& c = w8_config_info(static_cast<W8Config>(i));
        if (c.ab != ab) continue;
        const bool stream_k = std::string(c.name).find("_sk") != std::string::npos;
        ForceConfig force(c.name);
        for (int vec : {0, 1})
          for (xq_dtype y_t : {XQ_DTYPE_BF16, XQ_DTYPE_F16}) {
            if (y_t == XQ_DTYPE_F16 && !c.f16_out) continue;
            const bool with_bias = vec == 1;
            std::vector<double> ref(acc.size());
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                const double s = vec ? static_cast<double>(scales[m]) * scales[M + n] : static_cast<double>(ftx) * ftw;
                ref[m * N + n] = acc[m * N + n] * s + (with_bias ? bias[n] : 0.0);
              }
            xq_op op = make_op(XQ_OP_MATMUL);
            op.src[0] = tensor2(t, M, K, dx.p);
            op.src[1] = tensor2(t, N, K, dw.p);
            if (with_bias) op.src[2] = tensor1(XQ_DTYPE_F32, N, db.p);
            op.dst = tensor2(y_t, M, N, dy.p);
            if (vec) {
              op.i[0] = 1;
              op.src[3] = tensor1(XQ_DTYPE_F32, M + N, ds.p);
            } else {
              op.f[0] = ftx;
              op.f[1] = ftw;
            }
            const std::string what = std::string(c.name) + " vec=" + std::to_string(vec) +
                                     " out=" + std::to_string(y_t) + " M=" + std::to_string(M);
            dy.poison();
            ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << what << ": " << g_last_error;
            auto y = read_out(dy, y_t, M * N);
            EXPECT_EQ(count_nan(y), 0u) << what;
            EXPECT_LE(rel_error(y, ref), out_bound(y_t)) << what;
            if (stream_k) {
              dy2.poison();
              op.dst = tensor2(y_t, M, N, dy2.p);
              ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << what << ": " << g_last_error;
              EXPECT_EQ(dy2.get<uint16_t>(M * N), dy.get<uint16_t>(M * N)) << what << ": repeat call differs";
            }
          }
      }
    }
  }
#endif
}

// A forced configuration that cannot run the problem (other input type, F16
// output on a BF16-only one, an unknown name, or no CUTLASS here) is an
// error naming it, and leaves the output untouched.
TEST(W8A8Configs, ForcedConfigRefusesWhatItCannotTake) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int64_t M = 5, K = 64, N = 32;
  std::vector<uint8_t> xb(M * K, 1), wb(N * K, 1);
  DevBuf dx(xb.size()), dw(wb.size()), dy(M * N * 2);
  dx.put(xb);
  dw.put(wb);
  struct Case {
    const char* config;
    xq_dtype out;
    const char* message;
  };
  const bool here = cutlass_here();
  for (const Case& c : {Case{"f8_64x64_c1x8", XQ_DTYPE_BF16, here ? "cannot run this GEMM (I8 in" : "XQUANT_CUDA_W8A8_CONFIG"},
                        Case{"i8_128x128_c1x1_sk", XQ_DTYPE_F16, here ? "it takes I8 input and BF16 output" : "XQUANT_CUDA_W8A8_CONFIG"},
                        Case{"i8_64x64", XQ_DTYPE_BF16, here ? "not a W8A8 kernel configuration" : "XQUANT_CUDA_W8A8_CONFIG"}}) {
    ForceConfig force(c.config);
    dy.poison();
    xq_op op = make_op(XQ_OP_MATMUL);
    op.src[0] = tensor2(XQ_DTYPE_I8, M, K, dx.p);
    op.src[1] = tensor2(XQ_DTYPE_I8, N, K, dw.p);
    op.dst = tensor2(c.out, M, N, dy.p);
    op.f[0] = 1.0;
    op.f[1] = 1.0;
    EXPECT_NE(P.vt->run_op(P.state, &op), XQ_OK) << c.config;
    EXPECT_NE(g_last_error.find(c.message), std::string::npos) << c.config << ": " << g_last_error;
    auto y = dy.get<uint16_t>(M * N);
    size_t touched = 0;
    for (uint16_t v : y) touched += v != 0xFFFFu;
    EXPECT_EQ(touched, 0u) << c.config << ": the refused GEMM wrote its output";
  }
  // "auto" is the same as unset: the default route runs (64 x 1 x 1 each).
  ForceConfig force("auto");
  xq_op op = make_op(XQ_OP_MATMUL);
  op.src[0] = tensor2(XQ_DTYPE_I8, M, K, dx.p);
  op.src[1] = tensor2(XQ_DTYPE_I8, N, K, dw.p);
  op.dst = tensor2(XQ_DTYPE_BF16, M, N, dy.p);
  op.f[0] = 1.0;
  op.f[1] = 1.0;
  XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
  for (float v : read_out(dy, XQ_DTYPE_BF16, M * N)) EXPECT_EQ(v, 64.f);
}

}  // namespace test_w8a8_cutlass
