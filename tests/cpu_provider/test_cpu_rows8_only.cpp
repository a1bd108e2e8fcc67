// test_cpu_rows8_only.cpp: INT4 weight-only weights (and, on AVX-512 VNNI,
// INT8 weight-only and symmetric W8A8 ones) that keep only the
// eight-row interleaved decode copy (qgemv_rows8.hpp) and a row-major
// remainder of the rows outside whole groups of eight, their row-major codes
// dropped at prepare (qweight_codes.hpp). Every reader (DEQUANTIZE, decode at
// M = 1..4, prefill through dequantize + SGEMM and through the int8 tiles)
// must give bit for bit what the same weight gives with its row-major codes:
// XQUANT_CPU_GEMV_ROWS8=off (no copy at all) and =transpose (eight-row decode
// kernels on the row-major codes, the same arithmetic as the copy's).
#include "test_runtime.hpp"
#include "core/runtime.hpp"
#include "cpu.hpp"
#include "qkernels.hpp"
#include "plugins/registry.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace xquant;

namespace {

LoadedPlugin& cpu() { return test::quiet_runtime().plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"); }
const xq_kernel_vtable& vt() { return cpu().kernel(); }

test::Canon random_codes(uint32_t bits, int64_t rows, int64_t cols, int64_t group, bool sym, bool act_order,
                         uint32_t seed) {
  std::mt19937 rng(seed);
  test::Canon c;
  xq_quant_tensor& q = c.q;
  q.bits = bits;
  q.symmetric = sym ? 1 : 0;
  q.strategy = XQ_STRATEGY_GROUP;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group;
  q.n_groups = (cols + group - 1) / group;
  q.scale_dtype = XQ_DTYPE_F32;
  q.act_scheme = XQ_ACT_NONE;
  // INT4: the full -8..7; INT8: -127..127, as the symmetric quantizers make them.
  const int half = 1 << (bits - 1);
  std::uniform_int_distribution<int> code(bits == 8 ? -(half - 1) : -half, half - 1);
  std::uniform_real_distribution<float> u(0.01f, 0.1f);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  c.scales.resize(static_cast<size_t>(rows * q.n_groups));
  for (auto& s : c.scales) s = u(rng);
  if (!sym) {
    c.zps.resize(c.scales.size());
    for (auto& z : c.zps) z = static_cast<int8_t>(code(rng));
  }
  if (act_order) {
    c.gidx.resize(static_cast<size_t>(cols));
    std::uniform_int_distribution<int> g(0, static_cast<int>(q.n_groups) - 1);
    for (auto& v : c.gidx) v = g(rng);
  }
  c.bind();
  return c;
}

test::Canon random_int4(int64_t rows, int64_t cols, int64_t group, bool sym, bool act_order, uint32_t seed) {
  return random_codes(4, rows, cols, group, sym, act_order, seed);
}

// A weight prepared with XQUANT_CPU_GEMV_ROWS8 (and XQUANT_CPU_PREFILL) set
// as given; both are read at prepare time.
struct Prepared {
  xq_qweight* w = nullptr;
  Prepared(const xq_quant_tensor& q, const char* rows8, const char* prefill) {
    if (rows8) setenv("XQUANT_CPU_GEMV_ROWS8", rows8, 1);
    setenv("XQUANT_CPU_PREFILL", prefill, 1);
    EXPECT_EQ(vt().qweight_prepare(cpu().state, &q, &w), XQ_OK);
    unsetenv("XQUANT_CPU_GEMV_ROWS8");
    unsetenv("XQUANT_CPU_PREFILL");
  }
  ~Prepared() { vt().qweight_release(cpu().state, w); }
};

std::vector<float> run(xq_op_type type, const xq_qweight* w, const std::vector<float>& x, int64_t M,
                       const std::vector<float>& bias) {
  const int64_t rows = w->rows, cols = w->cols;
  std::vector<float> y(static_cast<size_t>(type == XQ_OP_QMATMUL ? M * rows : rows * cols));
  xq_op op = sdk::make_op(type);
  op.qweight = w;
  if (type == XQ_OP_QMATMUL) {
    op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {M, cols}, x.data());
    op.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {rows}, bias.data());
    op.dst = sdk::device_tensor(XQ_DTYPE_F32, {M, rows}, y.data());
  } else {
    op.dst = sdk::device_tensor(XQ_DTYPE_F32, {rows, cols}, y.data());
  }
  EXPECT_EQ(vt().run_op(cpu().state, &op), XQ_OK);
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace

TEST(CpuRows8Only, EveryReaderOfTheInterleavedOnlyWeightMatchesTheRowMajorOne) {
  struct Case {
    int64_t rows, cols, group;
    bool sym, act_order;
  };
  // Rows not a multiple of 8 (a remainder), a multiple (none), fewer than 8
  // (no group at all); K not a multiple of the group; act-order.
  const Case cases[] = {{37, 100, 32, false, false}, {69, 300, 128, true, true}, {24, 96, 32, false, true},
                        {5, 70, 32, true, false},    {131, 256, 64, false, false}};
  uint32_t seed = 70;
  bool any_copy = false;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << k.rows << "x" << k.cols << " g" << k.group << (k.sym ? " sym" : " asym")
                                      << (k.act_order ? " act-order" : ""));
    const test::Canon c = random_int4(k.rows, k.cols, k.group, k.sym, k.act_order, ++seed);
    for (const char* prefill : {"sgemm", "int8"}) {
      SCOPED_TRACE(prefill);
      const Prepared only(c.q, nullptr, prefill), off(c.q, "off", prefill), transpose(c.q, "transpose", prefill);
      ASSERT_TRUE(only.w && off.w && transpose.w);
      // off: no copy, the row-major codes kept; transpose: the same.
      EXPECT_TRUE(off.w->codes8.empty());
      EXPECT_NE(off.w->codes, nullptr);
      EXPECT_TRUE(transpose.w->codes8.empty());
      // The default keeps only the copy when its decode table reads one (an
      // ISA with eight-row kernels) and there is a whole group of eight.
      const bool has_copy = !only.w->codes8.empty();
      any_copy = any_copy || has_copy;
      EXPECT_EQ(only.w->codes == nullptr, has_copy);
      if (has_copy) {
        EXPECT_TRUE(only.w->owned.codes.empty());
        EXPECT_EQ(static_cast<int64_t>(only.w->codes_tail.size()), k.rows % 8 * only.w->row_bytes);
      }
      EXPECT_TRUE(same_bits(run(XQ_OP_DEQUANTIZE, only.w, {}, 0, {}), run(XQ_OP_DEQUANTIZE, off.w, {}, 0, {})));
      std::mt19937 rng(seed);
      std::normal_distribution<float> n;
      for (int64_t M : {1, 2, 3, 4, 9, 17}) {
        std::vector<float> x(static_cast<size_t>(M * k.cols)), bias(static_cast<size_t>(k.rows));
        for (auto& v : x) v = n(rng);
        for (auto& v : bias) v = n(rng);
        const auto y = run(XQ_OP_QMATMUL, only.w, x, M, bias);
        // M = 1 is the eight-row decode kernel: the transpose one reads the
        // same bytes in the same order; larger M the row-major kernels.
        const auto want = run(XQ_OP_QMATMUL, M == 1 ? transpose.w : off.w, x, M, bias);
        EXPECT_TRUE(same_bits(y, want)) << "M=" << M;
      }
    }
  }
  if (!any_copy) GTEST_SKIP() << "this CPU's decode table has no eight-row kernel (AVX2, AVX-512): no copy made";
}

TEST(CpuRows8Only, RowsEightOffMakesNoCopy) {
  const test::Canon c = random_int4(40, 64, 32, false, false, 5);
  const Prepared off(c.q, "off", "sgemm");
  ASSERT_NE(off.w, nullptr);
  EXPECT_TRUE(off.w->codes8.empty());
  EXPECT_TRUE(off.w->scales8.empty());
  EXPECT_TRUE(off.w->codes_tail.empty());
  EXPECT_EQ(off.w->codes, off.w->owned.codes.data());
}

// INT8 on AVX-512 VNNI (qgemv_rows8_int8_avx512.cpp): weight-only (W8A16)
// and symmetric W8A8 weights (dynamic per-token and static activations)
// keep only their interleaved copy (interleave_int8_rows8). Every reader
// matches XQUANT_CPU_GEMV_ROWS8=off (the row-major codes): W8A8 bit for bit
// at every M (decode at M <= 4 runs the eight-row kernel, which gives
// dot8_i8's values), W8A16 bit for bit above M = 1 and, at M = 1 (the
// eight-row gemv8: the same integers, block sums in another float order),
// within float rounding of the row's magnitude. Asymmetric W8A8 and the
// other ISAs make no copy.
TEST(CpuRows8Only, Int8WeightsOnAvx512KeepOnlyTheCopy) {
  struct Case {
    int64_t rows, cols, group;  // group 0: per channel
    bool sym;
    xq_act_scheme act;
  };
  const Case cases[] = {{37, 100, 0, true, XQ_ACT_DYNAMIC_TOKEN}, {69, 300, 128, true, XQ_ACT_DYNAMIC_TOKEN},
                        {24, 96, 0, true, XQ_ACT_STATIC_TENSOR},  {5, 70, 0, true, XQ_ACT_DYNAMIC_TOKEN},
                        {131, 256, 64, true, XQ_ACT_NONE},        {40, 200, 0, false, XQ_ACT_NONE},
                        {40, 200, 0, false, XQ_ACT_DYNAMIC_TOKEN}};
  const bool avx512 = cpu::selected_isa() == cpu::Isa::avx512;
  uint32_t seed = 170;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message() << k.rows << "x" << k.cols << " g" << k.group << (k.sym ? " sym" : " asym")
                                      << " act " << k.act);
    test::Canon c = random_codes(8, k.rows, k.cols, k.group ? k.group : k.cols, k.sym, false, ++seed);
    if (!k.group) c.q.strategy = XQ_STRATEGY_CHANNEL;
    c.q.act_scheme = k.act;
    c.q.act_bits = k.act == XQ_ACT_NONE ? 0 : 8;
    c.q.input_scale = 0.02f;
    const Prepared only(c.q, nullptr, "sgemm"), off(c.q, "off", "sgemm");
    ASSERT_TRUE(only.w && off.w);
    EXPECT_TRUE(off.w->codes8.empty());
    const bool want_copy = avx512 && k.rows >= 8 && (k.sym || k.act == XQ_ACT_NONE);
    EXPECT_EQ(!only.w->codes8.empty(), want_copy);
    EXPECT_EQ(only.w->codes == nullptr, want_copy);
    if (want_copy) {
      EXPECT_EQ(static_cast<int64_t>(only.w->codes_tail.size()), k.rows % 8 * only.w->row_bytes);
    }
    EXPECT_TRUE(same_bits(run(XQ_OP_DEQUANTIZE, only.w, {}, 0, {}), run(XQ_OP_DEQUANTIZE, off.w, {}, 0, {})));
    std::mt19937 rng(seed);
    std::normal_distribution<float> n;
    for (int64_t M : {1, 2, 3, 4, 5, 9, 17}) {
      std::vector<float> x(static_cast<size_t>(M * k.cols)), bias(static_cast<size_t>(k.rows));
      for (auto& v : x) v = n(rng);
      for (auto& v : bias) v = n(rng);
      const auto y = run(XQ_OP_QMATMUL, only.w, x, M, bias);
      const auto want = run(XQ_OP_QMATMUL, off.w, x, M, bias);
      if (k.act != XQ_ACT_NONE || M > 1 || !want_copy) {
        EXPECT_TRUE(same_bits(y, want)) << "M=" << M;
        continue;
      }
      for (int64_t r = 0; r < k.rows; ++r) {
        double mag = std::fabs(bias[r]);
        for (int64_t i = 0; i < k.cols; ++i)
          mag += std::fabs(x[i] * c.codes[r * k.cols + i] * c.scales[k.group ? r * c.q.n_groups + i / k.group : r]);
        EXPECT_NEAR(y[r], want[r], 2e-6 * (1.0 + mag)) << "row " << r;
      }
    }
  }
  if (!avx512) GTEST_SKIP() << "the selected ISA is not avx512: INT8 weights make no copy there (checked above)";
}
