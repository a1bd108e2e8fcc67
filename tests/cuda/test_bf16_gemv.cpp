// test_bf16_gemv.cpp: BF16 MATMUL at 1..4 rows, which the provider runs on
// the weight-streaming kernel of plugins/cuda/src/bf16_gemv.cu, through the
// ABI on fresh random inputs against a float64 reference on the
// BF16-rounded operands, with and without bias, beside cuBLASLt
// (XQUANT_BF16_GEMV=0) on the same inputs, a row read by 1, 2 and 4 warps
// (XQUANT_BF16_GEMV_SPLIT); 5 rows and rows longer than the kernel's limit
// go to cuBLASLt either way. Outputs are poisoned before every run.
//
// Bound (||gpu - ref|| / ||ref||): 5e-3, the BF16 output's rounding (2^-9
// relative per element) with room for F32 summation order.
#include "test_host.hpp"

#include <xquant/sdk/half.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "bf16_gemv.hpp"

using namespace xqtest;

namespace {

struct Gemm {
  int64_t M, N, K;
  bool bias;
};

std::vector<uint16_t> bf16_random(int64_t n, std::vector<float>* rounded) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = uniform(-1.f, 1.f);
  return to_half_bits(v, XQ_DTYPE_BF16, rounded);
}

std::vector<float> run_matmul(const Gemm& g, DevBuf& dx, size_t x_offset, DevBuf& dw, DevBuf* db, DevBuf& dy) {
  auto& P = Plugin::get();
  xq_op op = make_op(XQ_OP_MATMUL);
  op.src[0] = tensor2(XQ_DTYPE_BF16, g.M, g.K, static_cast<char*>(dx.p) + x_offset);
  op.src[1] = tensor2(XQ_DTYPE_BF16, g.N, g.K, dw.p);
  if (db) op.src[2] = tensor1(XQ_DTYPE_F32, g.N, db->p);
  op.dst = tensor2(XQ_DTYPE_BF16, g.M, g.N, dy.p);
  dy.poison();
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 1u) << g_last_error;
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  std::vector<float> y;
  for (uint16_t b : dy.get<uint16_t>(static_cast<size_t>(g.M * g.N))) y.push_back(xquant::sdk::bf16_to_f32(b));
  return y;
}

// Sets XQUANT_BF16_GEMV for its lifetime (the provider reads it per op).
struct GemvSwitch {
  explicit GemvSwitch(bool on) { ::setenv("XQUANT_BF16_GEMV", on ? "1" : "0", 1); }
  ~GemvSwitch() { ::unsetenv("XQUANT_BF16_GEMV"); }
};

// Sets XQUANT_BF16_GEMV_SPLIT for its lifetime (read per call); 0 leaves it unset.
struct SplitSwitch {
  explicit SplitSwitch(int split) {
    if (split) ::setenv("XQUANT_BF16_GEMV_SPLIT", std::to_string(split).c_str(), 1);
  }
  ~SplitSwitch() { ::unsetenv("XQUANT_BF16_GEMV_SPLIT"); }
};

}  // namespace

TEST(CudaBf16Gemv, MatchesFloat64ReferenceAndCublasLt) {
  XQ_REQUIRE_GPU();
  const Gemm cases[] = {{1, 4096, 4096, false}, {1, 6144, 4096, false}, {1, 4096, 14336, false}, {2, 1000, 8, true},
                        {3, 136, 2056, true},   {4, 520, 1024, false},  {1, 8, 64, true},         {4, 40, 4104, true},
                        {5, 264, 512, false}};
  for (const Gemm& g : cases) {
    std::vector<float> x, w, bias(static_cast<size_t>(g.N));
    const auto xb = bf16_random(g.M * g.K, &x), wb = bf16_random(g.N * g.K, &w);
    for (auto& b : bias) b = uniform(-0.5f, 0.5f);
    // bias goes to the GEMM in the operand dtype (provider bias_as): compare on its rounding.
    std::vector<float> bias_r;
    to_half_bits(bias, XQ_DTYPE_BF16, &bias_r);
    auto ref = ref_matmul(x, w, g.M, g.N, g.K, g.bias ? &bias_r : nullptr);
    // x twice: at offset 0 and 2 bytes in (not 16-byte aligned: cuBLASLt's case).
    DevBuf dx(xb.size() * 2 + 16), dw(wb.size() * 2), db(bias.size() * 4), dy(static_cast<size_t>(g.M * g.N) * 2);
    dx.put(xb);
    dw.put(wb);
    db.put(bias);
    const std::string what = "M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) +
                             (g.bias ? " bias" : "");
    std::vector<float> off;
    {
      GemvSwitch s(false);
      off = run_matmul(g, dx, 0, dw, g.bias ? &db : nullptr, dy);
    }
    EXPECT_LE(rel_error(off, ref), 5e-3) << what << " (cuBLASLt)";
    for (int split : {0, 1, 2, 4}) {  // 0: the default rule
      SplitSwitch sp(split);
      const int warps = xqcuda::bf16_gemv_split();
      EXPECT_EQ(warps, split ? split : xqcuda::kDefaultSplit);
      const int64_t max_k = warps > 1 ? xqcuda::kGemvMaxSplitK : xqcuda::kGemvMaxK;
      EXPECT_EQ(xqcuda::bf16_gemv_fits(g.M, g.K, dx.p, dw.p, warps), g.M <= 4 && g.K <= max_k) << what;
      GemvSwitch s(true);
      const std::vector<float> on = run_matmul(g, dx, 0, dw, g.bias ? &db : nullptr, dy);
      EXPECT_EQ(count_nan(on), 0u) << what << " split " << split;
      EXPECT_LE(rel_error(on, ref), 5e-3) << what << " (gemv, split " << split << ")";
    }
    // An x off 16-byte alignment is not the gemv's (16-byte loads); the
    // provider refuses it up front (UnalignedHalfOperandsAreRefusedUpFront).
    EXPECT_FALSE(xqcuda::bf16_gemv_fits(g.M, g.K, static_cast<char*>(dx.p) + 2, dw.p, xqcuda::kDefaultSplit));
  }
}

// A split the kernel does not have is an error naming the variable, not a
// silent default; with the kernel switched off the variable is not read.
TEST(CudaBf16Gemv, UnknownSplitIsAnErrorNamingIt) {
  XQ_REQUIRE_GPU();
  const Gemm g{1, 64, 256, false};
  std::vector<float> x, w;
  const auto xb = bf16_random(g.M * g.K, &x), wb = bf16_random(g.N * g.K, &w);
  DevBuf dx(g.M * g.K * 2), dw(g.N * g.K * 2), dy(g.M * g.N * 2);
  dx.put(xb);
  dw.put(wb);
  auto& P = Plugin::get();
  xq_op op = make_op(XQ_OP_MATMUL);
  op.src[0] = tensor2(XQ_DTYPE_BF16, g.M, g.K, dx.p);
  op.src[1] = tensor2(XQ_DTYPE_BF16, g.N, g.K, dw.p);
  op.dst = tensor2(XQ_DTYPE_BF16, g.M, g.N, dy.p);
  EnvSet bad("XQUANT_BF16_GEMV_SPLIT", "3");
  {
    GemvSwitch on(true);
    EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_ERR_INVALID_ARGUMENT);
    EXPECT_NE(g_last_error.find("XQUANT_BF16_GEMV_SPLIT=3"), std::string::npos) << g_last_error;
  }
  GemvSwitch off(false);
  EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
}

// A BF16 or F16 MATMUL with an operand off 16-byte alignment is refused by
// supports_op and run_op (XQ_ERR_UNSUPPORTED, the operand named) before any
// work: cuBLASLt used to take it and fail at run time (status 15), and the
// few-row kernel reads 16-byte vectors. dst stays as it was; the same
// operands aligned still run, on both paths.
TEST(CudaBf16Gemv, UnalignedHalfOperandsAreRefusedUpFront) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  const int64_t K = 64, N = 32;
  for (xq_dtype t : {XQ_DTYPE_BF16, XQ_DTYPE_F16})
    for (int64_t M : {1, 8}) {  // the few-row kernel's rows and cuBLASLt's
      std::vector<float> x(static_cast<size_t>(M * K)), w(static_cast<size_t>(N * K));
      for (auto* v : {&x, &w})
        for (auto& e : *v) e = uniform(-1.f, 1.f);
      const auto xb = to_half_bits(x, t, &x), wb = to_half_bits(w, t, &w);
      // 16 spare bytes each, so an operand can start 2 bytes in.
      DevBuf dx(xb.size() * 2 + 16), dw(wb.size() * 2 + 16), dy(static_cast<size_t>(M * N) * 2 + 16);
      dx.put(xb);
      dw.put(wb);
      struct Case {
        size_t x_off, w_off, y_off;
        const char* named;  // the operand the message names; null: all aligned
      };
      for (const Case c : {Case{2, 0, 0, "src[0] (x)"}, Case{0, 2, 0, "src[1] (w)"}, Case{0, 0, 2, "dst"},
                           Case{0, 0, 0, nullptr}}) {
        xq_op op = make_op(XQ_OP_MATMUL);
        op.src[0] = tensor2(t, M, K, static_cast<char*>(dx.p) + c.x_off);
        op.src[1] = tensor2(t, N, K, static_cast<char*>(dw.p) + c.w_off);
        op.dst = tensor2(t, M, N, static_cast<char*>(dy.p) + c.y_off);
        dy.poison();
        const std::string what = std::string(t == XQ_DTYPE_BF16 ? "BF16" : "F16") + " M=" + std::to_string(M) +
                                 (c.named ? std::string(" ") + c.named + " 2 bytes off" : " aligned");
        if (c.named) {
          EXPECT_EQ(P.vt->supports_op(P.state, &op), 0u) << what;
          EXPECT_EQ(P.vt->run_op(P.state, &op), XQ_ERR_UNSUPPORTED) << what;
          EXPECT_NE(g_last_error.find("16-byte aligned"), std::string::npos) << what << ": " << g_last_error;
          EXPECT_NE(g_last_error.find(c.named), std::string::npos) << what << ": " << g_last_error;
          const auto y = dy.get<uint8_t>(dy.n);
          EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](uint8_t b) { return b == 0xFF; })) << what << ": dst written";
        } else {
          EXPECT_EQ(P.vt->supports_op(P.state, &op), 1u) << what << ": " << g_last_error;
          XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
          std::vector<float> y;
          for (uint16_t b : dy.get<uint16_t>(static_cast<size_t>(M * N))) y.push_back(half_bits_to_f32(b, t));
          EXPECT_LE(rel_error(y, ref_matmul(x, w, M, N, K, nullptr)), 5e-3) << what;
        }
      }
    }
}

// Weight-read rate of a batch-1 BF16 MATMUL at the 8-layer Llama-3.1-8B
// bench's shapes, the gemv (1, 2 and 4 warps a row) beside cuBLASLt: host
// time over 100 ops after a synchronisation (ops enqueue back to back, so
// launches overlap kernels).
// Prints; asserts nothing about speed (--gtest_also_run_disabled_tests).
TEST(CudaBf16Gemv, DISABLED_SpeedAtBatch1) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  struct S {
    const char* name;
    int64_t N, K;
  };
  for (S s : {S{"q|k|v 6144x4096", 6144, 4096}, S{"o_proj 4096x4096", 4096, 4096},
              S{"gate|up 28672x4096", 28672, 4096}, S{"down 4096x14336", 4096, 14336},
              S{"lm_head 128256x4096", 128256, 4096}}) {
    DevBuf dx(s.K * 2), dw(static_cast<size_t>(s.N * s.K) * 2), dy(s.N * 2);
    dx.put(bf16_random(s.K, nullptr));
    dw.put(std::vector<uint16_t>(static_cast<size_t>(s.N * s.K), 0x3c00));
    xq_op op = make_op(XQ_OP_MATMUL);
    op.src[0] = tensor2(XQ_DTYPE_BF16, 1, s.K, dx.p);
    op.src[1] = tensor2(XQ_DTYPE_BF16, s.N, s.K, dw.p);
    op.dst = tensor2(XQ_DTYPE_BF16, 1, s.N, dy.p);
    double us[4];  // cuBLASLt, then the kernel with 1, 2 and 4 warps a row
    for (int v = 1; v <= 3; ++v) {  // the kernel itself (whatever K: the provider sends long rows to cuBLASLt)
      auto launch = [&] {
        return xqcuda::bf16_gemv(dx.p, dw.p, nullptr, xqcuda::DType::BF16, 1, s.N, s.K, dy.p, xqcuda::DType::BF16,
                                 nullptr, 1 << (v - 1));
      };
      for (int i = 0; i < 10; ++i) ASSERT_EQ(launch(), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 100; ++i) launch();
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      us[v] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 100;
    }
    {  // cuBLASLt through the provider
      GemvSwitch sw(false);
      for (int i = 0; i < 10; ++i) XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
      XQ_OK_OR_FAIL(P.vt->synchronize(P.state));
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 100; ++i) XQ_OK_OR_FAIL(P.vt->run_op(P.state, &op));
      XQ_OK_OR_FAIL(P.vt->synchronize(P.state));
      us[0] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 100;
    }
    const double gb = static_cast<double>(s.N * s.K) * 2 / 1e9;
    std::printf("BF16 MATMUL M=1 %-20s cuBLASLt %7.1f us (%5.0f GB/s); gemv 1 warp a row %7.1f us (%.2fx), 2 warps "
                "%7.1f (%.2fx), 4 warps %7.1f (%.2fx)\n",
                s.name, us[0], gb / us[0] * 1e6, us[1], us[0] / us[1], us[2], us[0] / us[2], us[3], us[0] / us[3]);
  }
}
