// test_w8a8_gemv.cpp: the few-row W8A8 kernel QMATMUL takes at M <= 8
// (plugins/cuda/src/w8a8_gemv.hpp), INT8 and FP8 E4M3, through the plugin ABI.
//
// The references are fed the activation codes and per-token scales of the
// provider's own QUANTIZE_ACT (the kernel QMATMUL runs first; test_w8a8.cpp
// pins it bit for bit against a host quantizer), so what is checked here is
// the product:
// - INT8: bit for bit. The int32 sum is exact and the kernel rounds
//   (float(acc) * s_w) * s_x + bias one step at a time, as the host does
//   (the CUTLASS epilogues' order, so the fused MoE GEMM gives the same bits).
// - FP8: against the exact products summed in double, test_fp8_qweight.cpp's
//   bounds (BF16 out 1e-2, F32 out 5e-4 relative L2: Hopper's FP8 tensor
//   cores accumulate with fewer mantissa bits than f32).
// Every M from 1 to 8, every K split and both load depths forced
// (XQUANT_CUDA_W8_GEMV_SPLIT, _UNROLL), K not
// a multiple of the kernel's 64-byte step, outputs poisoned with one row more
// than M that must stay untouched; and which path runs (M <= 8 the kernel,
// M = 9 a GEMM, XQUANT_CUDA_W8_GEMV=0 the GEMM for every M).
// The fused form (the kernel quantizes the BF16/F16 row itself; M = 1 and
// K + 16 <= 40 KB) is what QMATMUL runs by default there; each
// call is repeated with XQUANT_CUDA_W8_GEMV_FUSED=0 (QUANTIZE_ACT's kernel
// first) and the two outputs must be the same bytes, INT8 and FP8 alike.
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include <xquant/sdk/fp8.hpp>

#include "test_host.hpp"

using namespace xqtest;

namespace {

// FP8 runs this kernel on sm_90 only (w8a8_gemv_fits says why).
bool fp8_gemv_runs_here() {
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

struct W8GemvCase {
  bool fp8;
  xq_act_scheme act;  // INT8: dynamic per token or static; FP8: dynamic only
  bool per_tensor;
  bool bias;
  xq_dtype out;
  int64_t K, N;
};

// A prepared W8A8 weight with random codes and scales.
struct W8Weight {
  std::vector<int8_t> codes;
  std::vector<float> scales;
  float input_scale = 0.02f;
  xq_qweight* qw = nullptr;
  explicit W8Weight(const W8GemvCase& c) {
    codes.resize(c.N * c.K);
    for (auto& v : codes)
      v = c.fp8 ? static_cast<int8_t>(xquant::sdk::f32_to_e4m3(uniform(-448.f, 448.f) * uniform(0.f, 1.f)))
                : static_cast<int8_t>(uniform_int(-127, 127));
    scales.resize(c.per_tensor ? 1 : c.N);
    for (auto& s : scales) s = uniform(1e-3f, 1e-2f);
    xq_quant_tensor q{};
    q.struct_size = sizeof(q);
    q.bits = c.fp8 ? XQ_BITS_F8_E4M3 : 8;
    q.symmetric = 1;
    q.strategy = c.per_tensor ? XQ_STRATEGY_TENSOR : XQ_STRATEGY_CHANNEL;
    q.rows = c.N;
    q.cols = c.K;
    q.group_size = c.K;
    q.n_groups = 1;
    q.codes = codes.data();
    q.scales = scales.data();
    q.scale_dtype = XQ_DTYPE_F32;
    q.act_scheme = c.act;
    q.act_bits = c.fp8 ? XQ_BITS_F8_E4M3 : 8;
    q.input_scale = input_scale;
    auto& P = Plugin::get();
    EXPECT_EQ(P.vt->qweight_prepare(P.state, &q, &qw), XQ_OK) << g_last_error;
  }
  ~W8Weight() {
    if (qw) Plugin::get().vt->qweight_release(Plugin::get().state, qw);
  }
  float sw(int64_t n) const { return scales[scales.size() == 1 ? 0 : n]; }
  float w(bool fp8, int64_t i) const {
    return fp8 ? xquant::sdk::e4m3_to_f32(static_cast<uint8_t>(codes[i])) : static_cast<float>(codes[i]);
  }
};

// The provider's QUANTIZE_ACT of BF16 rows: codes [M, K] and one scale a row.
void quantize_on_gpu(const W8GemvCase& c, const W8Weight& wt, DevBuf& dx, int64_t M, std::vector<uint8_t>* codes,
                     std::vector<float>* scales) {
  auto& P = Plugin::get();
  DevBuf dq(M * c.K), ds(M * 4);
  xq_op op = make_op(XQ_OP_QUANTIZE_ACT);
  op.src[0] = tensor2(XQ_DTYPE_BF16, M, c.K, dx.p);
  op.dst = tensor2(c.fp8 ? XQ_DTYPE_F8_E4M3 : XQ_DTYPE_I8, M, c.K, dq.p);
  const bool dynamic = c.act == XQ_ACT_DYNAMIC_TOKEN;
  if (dynamic) {
    op.src[1] = tensor1(XQ_DTYPE_F32, M, ds.p);
  } else {
    op.i[0] = 1;
    op.f[0] = wt.input_scale;
  }
  ASSERT_EQ(P.vt->run_op(P.state, &op), XQ_OK) << g_last_error;
  *codes = dq.get<uint8_t>(M * c.K);
  *scales = dynamic ? ds.get<float>(M) : std::vector<float>(M, wt.input_scale);
}

// INT8: the kernel's arithmetic on the host, one rounding a step (no -march here, so no FMA).
std::vector<float> expected_int8(const W8GemvCase& c, const W8Weight& wt, const std::vector<uint8_t>& xq,
                                 const std::vector<float>& sa, const std::vector<float>& bias, int64_t M) {
  std::vector<float> y(M * c.N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < c.K; ++k)
        acc += static_cast<int64_t>(static_cast<int8_t>(xq[m * c.K + k])) * wt.codes[n * c.K + k];
      float r = static_cast<float>(acc) * wt.sw(n);
      r = r * sa[m];
      if (c.bias) r = r + bias[n];
      y[m * c.N + n] = r;
    }
  return y;
}

// FP8: the exact products summed in double.
std::vector<double> expected_fp8(const W8GemvCase& c, const W8Weight& wt, const std::vector<uint8_t>& xq,
                                 const std::vector<float>& sa, const std::vector<float>& bias, int64_t M) {
  std::vector<double> y(M * c.N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < c.K; ++k)
        acc += static_cast<double>(xquant::sdk::e4m3_to_f32(xq[m * c.K + k])) * wt.w(true, n * c.K + k);
      y[m * c.N + n] = acc * sa[m] * wt.sw(n) + (c.bias ? bias[n] : 0.f);
    }
  return y;
}

// Runs QMATMUL into a poisoned [M + 1, N] buffer; returns the first M rows'
// raw bytes and checks the extra row kept its poison.
// split / unroll: XQUANT_CUDA_W8_GEMV_SPLIT / _UNROLL for this call, or null.
// fused: XQUANT_CUDA_W8_GEMV_FUSED=0 when false. x_t: the activation rows' type.
std::vector<uint8_t> run_qmatmul(const W8GemvCase& c, const W8Weight& wt, DevBuf& dx, DevBuf* db, int64_t M,
                                 const char* split, const char* unroll, bool fused = true,
                                 xq_dtype x_t = XQ_DTYPE_BF16) {
  auto& P = Plugin::get();
  const size_t osz = c.out == XQ_DTYPE_F32 ? 4 : 2;
  DevBuf dy((M + 1) * c.N * osz);
  dy.poison();
  xq_op op = make_op(XQ_OP_QMATMUL);
  op.qweight = wt.qw;
  op.src[0] = tensor2(x_t, M, c.K, dx.p);
  if (db) op.src[2] = tensor1(XQ_DTYPE_F32, c.N, db->p);
  op.dst = tensor2(c.out, M, c.N, dy.p);
  EXPECT_EQ(P.vt->supports_op(P.state, &op), 1u);
  if (split) setenv("XQUANT_CUDA_W8_GEMV_SPLIT", split, 1);
  if (unroll) setenv("XQUANT_CUDA_W8_GEMV_UNROLL", unroll, 1);
  if (!fused) setenv("XQUANT_CUDA_W8_GEMV_FUSED", "0", 1);
  const xq_status st = P.vt->run_op(P.state, &op);
  unsetenv("XQUANT_CUDA_W8_GEMV_SPLIT");
  unsetenv("XQUANT_CUDA_W8_GEMV_UNROLL");
  unsetenv("XQUANT_CUDA_W8_GEMV_FUSED");
  EXPECT_EQ(st, XQ_OK) << g_last_error;
  auto all = dy.get<uint8_t>((M + 1) * c.N * osz);
  size_t touched = 0;
  for (size_t i = M * c.N * osz; i < all.size(); ++i) touched += all[i] != 0xFF;
  EXPECT_EQ(touched, 0u) << "bytes written past row M = " << M;
  all.resize(M * c.N * osz);
  return all;
}

std::vector<float> as_floats(const std::vector<uint8_t>& bytes, xq_dtype t) {
  const size_t osz = t == XQ_DTYPE_F32 ? 4 : 2;
  std::vector<float> y(bytes.size() / osz);
  for (size_t i = 0; i < y.size(); ++i) {
    if (t == XQ_DTYPE_F32) {
      std::memcpy(&y[i], &bytes[4 * i], 4);
    } else {
      uint16_t b;
      std::memcpy(&b, &bytes[2 * i], 2);
      y[i] = half_bits_to_f32(b, t);
    }
  }
  return y;
}

// The float results as the output type stores them.
std::vector<uint8_t> stored_bytes(const std::vector<float>& y, xq_dtype t) {
  std::vector<uint8_t> bytes;
  if (t == XQ_DTYPE_F32) {
    bytes.resize(y.size() * 4);
    std::memcpy(bytes.data(), y.data(), bytes.size());
  } else {
    auto bits = to_half_bits(y, t, nullptr);
    bytes.resize(bits.size() * 2);
    std::memcpy(bytes.data(), bits.data(), bytes.size());
  }
  return bytes;
}

// A bias of N values in [-0.5, 0.5], on the host and uploaded.
struct RandomBias {
  std::vector<float> host;
  DevBuf dev;
  explicit RandomBias(int64_t N) : host(static_cast<size_t>(N)), dev(static_cast<size_t>(N) * 4) {
    for (auto& b : host) b = uniform(-0.5f, 0.5f);
    dev.put(host);
  }
};

class W8A8Gemv : public testing::TestWithParam<W8GemvCase> {};

TEST_P(W8A8Gemv, EveryRowCountAndKSplitAgainstTheReference) {
  XQ_REQUIRE_GPU();
  const W8GemvCase c = GetParam();
  if (c.fp8 && !fp8_gemv_runs_here()) GTEST_SKIP() << "the FP8 kernel runs on sm_90 only";
  W8Weight wt(c);
  ASSERT_NE(wt.qw, nullptr);
  RandomBias rb(c.N);
  const std::vector<float>& bias = rb.host;
  DevBuf& db = rb.dev;
  for (int64_t M = 1; M <= 8; ++M) {
    std::vector<float> x(M * c.K);
    for (int64_t m = 0; m < M; ++m) {
      const float range = uniform(0.1f, 4.f);  // rows of different scales
      for (int64_t k = 0; k < c.K; ++k) x[m * c.K + k] = uniform(-range, range);
    }
    auto xbits = to_half_bits(x, XQ_DTYPE_BF16, nullptr);
    DevBuf dx(xbits.size() * 2);
    dx.put(xbits);
    std::vector<uint8_t> xq;
    std::vector<float> sa;
    quantize_on_gpu(c, wt, dx, M, &xq, &sa);
    std::vector<double> want_fp8;
    std::vector<uint8_t> want_int8;
    if (c.fp8) want_fp8 = expected_fp8(c, wt, xq, sa, bias, M);
    else want_int8 = stored_bytes(expected_int8(c, wt, xq, sa, bias, M), c.out);
    using Knobs = std::pair<const char*, const char*>;  // split, unroll (null: the default)
    for (auto [split, unroll] : {Knobs{nullptr, nullptr}, Knobs{"1", "4"}, Knobs{"2", "4"}, Knobs{"4", "4"},
                                 Knobs{"8", "4"}, Knobs{"1", "8"}, Knobs{"2", "8"}, Knobs{"4", "8"}, Knobs{"8", "8"}}) {
      auto got = run_qmatmul(c, wt, dx, c.bias ? &db : nullptr, M, split, unroll);
      const std::string where = "M=" + std::to_string(M) + " split=" + (split ? split : "default") +
                                " unroll=" + (unroll ? unroll : "default");
      EXPECT_EQ(got, run_qmatmul(c, wt, dx, c.bias ? &db : nullptr, M, split, unroll, false))
          << where << ": fused and separate quantization differ";
      if (c.fp8) {
        auto y = as_floats(got, c.out);
        EXPECT_EQ(count_nan(y), 0u) << where;
        EXPECT_LE(rel_error(y, want_fp8), c.out == XQ_DTYPE_F32 ? 5e-4 : 1e-2) << where;
      } else {
        size_t bad = 0;
        for (size_t i = 0; i < want_int8.size(); ++i) bad += got[i] != want_int8[i];
        EXPECT_EQ(bad, 0u) << where;
      }
    }
  }
}

std::vector<W8GemvCase> w8_gemv_cases() {
  const auto dyn = XQ_ACT_DYNAMIC_TOKEN, stat = XQ_ACT_STATIC_TENSOR;
  return {
      // K a multiple of the 64-byte step, with and without a split's tail.
      {false, dyn, false, true, XQ_DTYPE_BF16, 4096, 384},
      {false, stat, true, false, XQ_DTYPE_F16, 4096, 96},
      {false, dyn, true, true, XQ_DTYPE_F32, 1024, 16},
      // K % 64 = 48 and 16: the last step's lanes past K add zeros.
      {false, dyn, false, false, XQ_DTYPE_BF16, 1008, 80},
      {false, stat, false, true, XQ_DTYPE_F32, 80, 48},
      // Long rows (down_proj's K), a split of 8 over 224 steps.
      {false, dyn, false, true, XQ_DTYPE_BF16, 14336, 64},
      {true, dyn, false, true, XQ_DTYPE_BF16, 4096, 384},
      {true, dyn, true, false, XQ_DTYPE_F32, 1008, 80},
      {true, dyn, false, true, XQ_DTYPE_F32, 14336, 64},
      {true, dyn, false, false, XQ_DTYPE_F16, 80, 32},
  };
}
std::string w8_gemv_name(const testing::TestParamInfo<W8GemvCase>& i) {
  const W8GemvCase& c = i.param;
  return std::string(c.fp8 ? "fp8" : "int8") + (c.act == XQ_ACT_DYNAMIC_TOKEN ? "_dyn" : "_static") +
         (c.per_tensor ? "_tensor" : "_channel") + (c.bias ? "_bias" : "") +
         (c.out == XQ_DTYPE_F32 ? "_f32" : c.out == XQ_DTYPE_F16 ? "_f16" : "_bf16") + "_K" + std::to_string(c.K) +
         "_N" + std::to_string(c.N);
}
INSTANTIATE_TEST_SUITE_P(Cuda, W8A8Gemv, testing::ValuesIn(w8_gemv_cases()), w8_gemv_name);

// Which path runs: an invalid split is an error only where the kernel is
// taken, so it tells the kernel's M range and the switch apart.
TEST(W8A8GemvDispatch, KernelUpToEightRowsGemmAboveAndWhenSwitchedOff) {
  XQ_REQUIRE_GPU();
  auto& P = Plugin::get();
  for (bool fp8 : {false, true}) {
    if (fp8 && !fp8_gemv_runs_here()) continue;
    const W8GemvCase c{fp8, XQ_ACT_DYNAMIC_TOKEN, false, false, XQ_DTYPE_BF16, 256, 64};
    W8Weight wt(c);
    ASSERT_NE(wt.qw, nullptr);
    DevBuf dx(9 * c.K * 2), dy(9 * c.N * 2);
    dx.put(std::vector<uint16_t>(9 * c.K, 0x3F80));  // 1.0
    auto run = [&](int64_t M, const char* gemv, const char* split) {
      xq_op op = make_op(XQ_OP_QMATMUL);
      op.qweight = wt.qw;
      op.src[0] = tensor2(XQ_DTYPE_BF16, M, c.K, dx.p);
      op.dst = tensor2(c.out, M, c.N, dy.p);
      if (gemv) setenv("XQUANT_CUDA_W8_GEMV", gemv, 1);
      setenv("XQUANT_CUDA_W8_GEMV_SPLIT", split, 1);
      const xq_status st = P.vt->run_op(P.state, &op);
      unsetenv("XQUANT_CUDA_W8_GEMV");
      unsetenv("XQUANT_CUDA_W8_GEMV_SPLIT");
      return st;
    };
    for (int64_t M : {1, 4, 8}) {
      EXPECT_EQ(run(M, nullptr, "3"), XQ_ERR_INVALID_ARGUMENT) << "fp8=" << fp8 << " M=" << M;
      EXPECT_NE(g_last_error.find("XQUANT_CUDA_W8_GEMV_SPLIT=3"), std::string::npos) << g_last_error;
      EXPECT_EQ(run(M, "0", "3"), XQ_OK) << "fp8=" << fp8 << " M=" << M << ": " << g_last_error;
    }
    EXPECT_EQ(run(9, nullptr, "3"), XQ_OK) << "fp8=" << fp8 << ": " << g_last_error;
  }
}

// F16 activation rows (the BF16 ones above): the fused form against
// QUANTIZE_ACT + the kernel, same bytes, dynamic and static INT8 and FP8,
// every M (the fused form runs at M = 1; above, both calls take the
// separate kernel, and must still agree).
TEST(W8A8GemvFused, F16RowsGiveTheSeparateQuantizationsBytes) {
  XQ_REQUIRE_GPU();
  for (const W8GemvCase& c : {W8GemvCase{false, XQ_ACT_DYNAMIC_TOKEN, false, true, XQ_DTYPE_BF16, 4096, 128},
                              W8GemvCase{false, XQ_ACT_STATIC_TENSOR, false, false, XQ_DTYPE_F16, 14336, 32},
                              W8GemvCase{true, XQ_ACT_DYNAMIC_TOKEN, false, true, XQ_DTYPE_F32, 4096, 64}}) {
    if (c.fp8 && !fp8_gemv_runs_here()) continue;
    W8Weight wt(c);
    ASSERT_NE(wt.qw, nullptr);
    RandomBias rb(c.N);
    for (int64_t M = 1; M <= 8; ++M) {
      std::vector<float> x(M * c.K);
      for (auto& v : x) v = uniform(-3.f, 3.f);
      auto xbits = to_half_bits(x, XQ_DTYPE_F16, nullptr);
      DevBuf dx(xbits.size() * 2);
      dx.put(xbits);
      const std::string where = std::string(c.fp8 ? "fp8" : "int8") + " K=" + std::to_string(c.K) +
                                " M=" + std::to_string(M);
      auto fused = run_qmatmul(c, wt, dx, c.bias ? &rb.dev : nullptr, M, nullptr, nullptr, true, XQ_DTYPE_F16);
      auto separate = run_qmatmul(c, wt, dx, c.bias ? &rb.dev : nullptr, M, nullptr, nullptr, false, XQ_DTYPE_F16);
      EXPECT_EQ(fused, separate) << where;
      EXPECT_EQ(count_nan(as_floats(fused, c.out)), 0u) << where;
    }
  }
}

}  // namespace
