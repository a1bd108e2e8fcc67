// test_cpu_qgemm.cpp: the `cpu` provider's quantized prefill GEMMs
// (qgemm_kernels*.cpp, qgemm.cpp), on fresh random inputs:
//   1. Each ISA's kernels against the scalar ones, bit for bit: dequantized
//      rows (also against (code - zero) * scale computed here from the packed
//      bytes), packed W8A8 panels, and the panel micro-kernel against the
//      GEMV table's per-pair dot4_i8 / dot8_i8 (the numbers W8A8 has always
//      produced) for every activation-row count 1..8, INT8 codes and
//      activations over the full range, -128 included (AVX2's vpmaddubsw
//      would saturate on it: its INT8 panels widen to int16 instead).
//      The weight-only integer prefill's panel kernel (per-block activation
//      scales) against the scalar dot4_q8 / dot8_q8, bit for bit.
//   2. QMATMUL through the plugin with M = 3, 17, 255 (3 takes the per-pair
//      path, the rest the prefill paths), N not a multiple of 16, K not a
//      multiple of the group or of 32: W8A8 on the integer path bit-identical
//      to the per-pair path (XQUANT_CPU_GEMV_ROWS large) on every ISA the CPU
//      has, W8A8 through SGEMM within float rounding of it; weight-
//      only prefill through SGEMM bit-identical across ISAs and within float
//      rounding of a double reference, through the integer panels the q8
//      pair path's bits; which path each takes by default.
// A path the CPU lacks is skipped with a message naming it.
#include "../support/cpu_provider_fixture.hpp"
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "cpu.hpp"
#include "plugins/registry.hpp"
#include "qgemm_kernels.hpp"
#include "qkernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
using xquant::cpu::Isa;
using xquant::cpu::kBlock;
using xquant::cpu::kPanelRows;

namespace {

std::mt19937 rng(20261201);

test::CpuProvider& fx() { return test::cpu_provider(); }

using test::ScopedEnv;

std::vector<float> rnd_f(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
std::vector<int8_t> rnd_i8(size_t n, int lo = -128, int hi = 127) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}
std::vector<uint8_t> rnd_u8(size_t n) {
  auto v = rnd_i8(n);
  return {v.begin(), v.end()};
}

// Random groups of 1..5 blocks covering nblk blocks.
std::vector<int64_t> random_groups(int64_t nblk) {
  std::uniform_int_distribution<int64_t> d(1, 5);
  std::vector<int64_t> bb{0};
  while (bb.back() < nblk) bb.push_back(std::min(nblk, bb.back() + d(rng)));
  return bb;
}

// The ISAs this CPU has beyond scalar; prints the ones it lacks.
std::vector<Isa> vector_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (cpu::cpu_has(isa)) out.push_back(isa);
    else std::printf("this CPU lacks %s: its prefill kernels not tested\n", cpu::isa_name(isa));
  }
  return out;
}

// The scalar table and every vector ISA this CPU has.
std::vector<Isa> every_isa() {
  std::vector<Isa> isas{Isa::scalar};
  for (Isa isa : vector_isas()) isas.push_back(isa);
  return isas;
}

// (code - zero) * scale of padded column p of a packed row, from the bytes.
float packed_value(const uint8_t* row, bool int4, int64_t p, float s, float z) {
  int code;
  if (int4) {
    const uint8_t b = row[p / kBlock * 16 + p % 16];
    code = (p % kBlock < 16 ? (b & 0x0F) : (b >> 4)) - 8;
  } else {
    code = static_cast<int8_t>(row[p]);
  }
  return (static_cast<float>(code) - z) * s;
}

}  // namespace

TEST(CpuQGemmKernels, DequantizedRowsAreTheScalarExpressionOnEveryIsa) {
  const auto isas = vector_isas();
  for (bool int4 : {true, false})
    for (int64_t nblk : {1, 3, 18}) {
      const int64_t Kp = nblk * kBlock, rows = 5, row_bytes = (int4 ? Kp / 2 : Kp) + 3;  // odd stride
      auto codes = rnd_u8(static_cast<size_t>(rows * row_bytes));
      for (auto bb : {std::vector<int64_t>{0, nblk}, random_groups(nblk)}) {
        const int64_t G = static_cast<int64_t>(bb.size()) - 1;
        auto s = rnd_f(static_cast<size_t>(rows * G));
        auto z = rnd_f(static_cast<size_t>(rows * G), -8.0f, 8.0f);
        for (const float* zp : {static_cast<const float*>(nullptr), static_cast<const float*>(z.data())}) {
          std::vector<float> want(static_cast<size_t>(rows * Kp));
          cpu::kScalarQGemmKernels.dequant_rows(codes.data(), row_bytes, int4, s.data(), zp, G, bb.data(), rows,
                                                want.data());
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < G; ++g)
              for (int64_t p = bb[g] * kBlock; p < bb[g + 1] * kBlock; ++p)
                ASSERT_EQ(want[r * Kp + p], packed_value(codes.data() + r * row_bytes, int4, p, s[r * G + g],
                                                         zp ? zp[r * G + g] : 0.0f))
                    << "scalar, row " << r << " column " << p;
          for (Isa isa : isas) {
            std::vector<float> got(static_cast<size_t>(rows * Kp));
            cpu::qgemm_kernels_of(isa).dequant_rows(codes.data(), row_bytes, int4, s.data(), zp, G, bb.data(), rows,
                                                    got.data());
            EXPECT_EQ(got, want) << cpu::isa_name(isa) << (int4 ? " int4 " : " int8 ") << nblk << " blocks, " << G
                                 << " groups" << (zp ? ", zero points" : "");
          }
        }
      }
    }
}

// Panels: the same bytes from every ISA (whole and ragged panels), and the
// micro-kernel's outputs equal to the scalar GEMV table's pair dots.
TEST(CpuQGemmKernels, PanelsGiveThePairDotsBitForBit) {
  const std::vector<Isa> isas = every_isa();
  const cpu::QKernels& pair = cpu::kScalarKernels;
  for (bool int4 : {true, false})
    for (int64_t nblk : {1, 3, 18, 48}) {
      const int64_t Kp = nblk * kBlock, N = 21, row_bytes = int4 ? Kp / 2 : Kp;
      auto codes = rnd_u8(static_cast<size_t>(N * row_bytes));  // INT8: the full range, -128 included
      const int64_t lda = Kp + 5;                                  // odd activation stride
      auto a = rnd_i8(static_cast<size_t>(cpu::kPanelActRows * lda));  // -128 included (static scales reach it)
      for (auto bb : {std::vector<int64_t>{0, nblk}, random_groups(nblk)}) {
        const int64_t G = static_cast<int64_t>(bb.size()) - 1;
        auto s = rnd_f(static_cast<size_t>(N * G));
        std::vector<int32_t> asum(static_cast<size_t>(cpu::kPanelActRows * G));
        for (int64_t j = 0; j < cpu::kPanelActRows; ++j)
          for (int64_t g = 0; g < G; ++g)
            for (int64_t p = bb[g] * kBlock; p < bb[g + 1] * kBlock; ++p) asum[j * G + g] += a[j * lda + p];
        for (int64_t n0 : {int64_t{0}, int64_t{16}}) {  // a whole panel, then one of 5 rows
          const int64_t nr = std::min(kPanelRows, N - n0);
          std::vector<uint8_t> want_panel(static_cast<size_t>(Kp * kPanelRows));
          std::vector<float> want_ps(static_cast<size_t>(G * kPanelRows));
          cpu::pack_panel_i8_scalar(codes.data(), row_bytes, int4, s.data(), G, Kp, n0, nr, want_panel.data(),
                                    want_ps.data());
          for (Isa isa : isas) {
            const cpu::QGemmKernels& k = cpu::qgemm_kernels_of(isa);
            const std::string where = std::string(cpu::isa_name(isa)) + (int4 ? " int4 " : " int8 ") +
                                      std::to_string(nblk) + " blocks, " + std::to_string(G) + " groups, panel at " +
                                      std::to_string(n0);
            std::vector<uint8_t> panel(want_panel.size());
            std::vector<float> ps(want_ps.size());
            k.pack_panel_i8(codes.data(), row_bytes, int4, s.data(), G, Kp, n0, nr, panel.data(), ps.data());
            EXPECT_EQ(panel, want_panel) << where;
            EXPECT_EQ(ps, want_ps) << where;
            ASSERT_NE(k.panel_i8, nullptr) << where << ": every table has W8A8 panels (AVX2: qgemm_panel_avx2.cpp)";
            for (int64_t mt = 1; mt <= cpu::kPanelActRows; ++mt) {
              std::vector<float> out(static_cast<size_t>(mt * kPanelRows));
              k.panel_i8(panel.data(), ps.data(), a.data(), lda, asum.data(), mt, bb.data(), G, !int4, out.data());
              for (int64_t j = 0; j < mt; ++j)
                for (int64_t i = 0; i < nr; ++i) {
                  const uint8_t* w = codes.data() + (n0 + i) * row_bytes;
                  const float* sg = s.data() + (n0 + i) * G;
                  const float ref = int4 ? pair.dot4_i8(w, a.data() + j * lda, bb.data(), G, sg)
                                         : pair.dot8_i8(reinterpret_cast<const int8_t*>(w), a.data() + j * lda,
                                                        bb.data(), G, sg);
                  ASSERT_EQ(out[j * kPanelRows + i], ref) << where << ", " << mt << " rows, pair " << i << "," << j;
                }
            }
          }
        }
      }
    }
}

// The weight-only integer prefill's panel kernel (panel_q8): q8 activations
// (int8 in [-127, 127], one float scale per 32-column block) against the same
// panels, each output equal to the scalar GEMV table's dot4_q8 / dot8_q8 for
// that pair, bit for bit, on every table that has the kernel.
TEST(CpuQGemmKernels, Q8PanelsGiveTheQ8PairDotsBitForBit) {
  const cpu::QKernels& pair = cpu::kScalarKernels;
  for (bool int4 : {true, false})
    for (int64_t nblk : {1, 3, 18, 48}) {
      const int64_t Kp = nblk * kBlock, N = 21, row_bytes = int4 ? Kp / 2 : Kp;
      auto codes = rnd_u8(static_cast<size_t>(N * row_bytes));
      const int64_t lda = Kp + 5, ldsa = nblk + 3;  // odd strides
      auto a = rnd_i8(static_cast<size_t>(cpu::kPanelActRows * lda), -127, 127);
      auto sa = rnd_f(static_cast<size_t>(cpu::kPanelActRows * ldsa), 0.001f, 0.05f);
      std::vector<int32_t> bsum(static_cast<size_t>(cpu::kPanelActRows * ldsa));
      for (int64_t j = 0; j < cpu::kPanelActRows; ++j)
        for (int64_t p = 0; p < Kp; ++p) bsum[j * ldsa + p / kBlock] += a[j * lda + p];
      for (auto bb : {std::vector<int64_t>{0, nblk}, random_groups(nblk)}) {
        const int64_t G = static_cast<int64_t>(bb.size()) - 1;
        auto s = rnd_f(static_cast<size_t>(N * G));
        for (int64_t n0 : {int64_t{0}, int64_t{16}}) {
          const int64_t nr = std::min(kPanelRows, N - n0);
          std::vector<uint8_t> panel(static_cast<size_t>(Kp * kPanelRows));
          std::vector<float> ps(static_cast<size_t>(G * kPanelRows));
          cpu::pack_panel_i8_scalar(codes.data(), row_bytes, int4, s.data(), G, Kp, n0, nr, panel.data(), ps.data());
          for (Isa isa : every_isa()) {
            const cpu::QGemmKernels& k = cpu::qgemm_kernels_of(isa);
            const std::string where = std::string(cpu::isa_name(isa)) + (int4 ? " int4 " : " int8 ") +
                                      std::to_string(nblk) + " blocks, " + std::to_string(G) + " groups, panel at " +
                                      std::to_string(n0);
            if (!k.panel_q8) {
              std::printf("%s has no q8 panel kernel (integer prefill takes its tiles there)\n", where.c_str());
              continue;
            }
            for (int64_t mt = 1; mt <= cpu::kPanelActRows; ++mt) {
              std::vector<float> out(static_cast<size_t>(mt * kPanelRows));
              k.panel_q8(panel.data(), ps.data(), nullptr, nullptr, a.data(), lda, sa.data(), ldsa, int4 ? nullptr : bsum.data(),
                         128, mt, bb.data(), G, !int4, out.data());
              for (int64_t j = 0; j < mt; ++j)
                for (int64_t i = 0; i < nr; ++i) {
                  const uint8_t* w = codes.data() + (n0 + i) * row_bytes;
                  const float* sg = s.data() + (n0 + i) * G;
                  const float ref =
                      int4 ? pair.dot4_q8(w, a.data() + j * lda, sa.data() + j * ldsa, bb.data(), G, sg)
                           : pair.dot8_q8(reinterpret_cast<const int8_t*>(w), a.data() + j * lda,
                                          sa.data() + j * ldsa, bb.data(), G, sg);
                  ASSERT_EQ(out[j * kPanelRows + i], ref) << where << ", " << mt << " rows, pair " << i << "," << j;
                }
            }
          }
        }
      }
    }
}

namespace {

// A canonical quantized tensor (random codes, positive scales, optional zero
// points and act-order), as the loaders hand it to qweight_prepare.
struct Canon {
  int64_t rows, cols, gs, ng;
  std::vector<int8_t> codes, zps;
  std::vector<float> scales;
  std::vector<int32_t> gidx;
  xq_quant_tensor t{};
  double w(int64_t r, int64_t c) const {
    const int64_t g = r * ng + (gidx.empty() ? c / gs : gidx[c]);
    return (codes[r * cols + c] - (zps.empty() ? 0.0 : zps[g])) * scales[g];
  }
};
Canon make_canon(int64_t rows, int64_t cols, uint32_t bits, int64_t gs, bool sym, bool act_order) {
  Canon c;
  c.rows = rows;
  c.cols = cols;
  c.gs = gs ? gs : cols;
  c.ng = (cols + c.gs - 1) / c.gs;
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  c.codes = rnd_i8(static_cast<size_t>(rows * cols), lo, hi);
  c.scales = rnd_f(static_cast<size_t>(rows * c.ng), 0.01f, 0.06f);
  if (!sym) c.zps = rnd_i8(static_cast<size_t>(rows * c.ng), lo, hi);
  if (act_order) {
    c.gidx.resize(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) c.gidx[i] = static_cast<int32_t>(i / c.gs);
    std::shuffle(c.gidx.begin(), c.gidx.end(), rng);
  }
  auto& t = c.t;
  t.struct_size = sizeof(t);
  t.bits = bits;
  t.symmetric = sym;
  t.strategy = gs ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  t.rows = rows;
  t.cols = cols;
  t.group_size = c.gs;
  t.n_groups = c.ng;
  t.codes = c.codes.data();
  t.scales = c.scales.data();
  t.zero_points = sym ? nullptr : c.zps.data();
  t.g_idx = act_order ? c.gidx.data() : nullptr;
  t.scale_dtype = XQ_DTYPE_F32;
  return c;
}

// QMATMUL of x [M, K] with the canonical weight prepared under the current
// environment (ISA, GEMV rows), with a bias.
std::vector<float> qmatmul(const Canon& c, const std::vector<float>& x, const std::vector<float>& bias, int64_t M) {
  xq_qweight* w = nullptr;
  EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &c.t, &w), XQ_OK);
  std::vector<float> y(static_cast<size_t>(M * c.rows));
  if (!w) return y;
  xq_op op = sdk::make_op(XQ_OP_QMATMUL);
  op.qweight = w;
  op.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {M, c.cols}, x.data());
  op.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {c.rows}, bias.data());
  op.dst = sdk::device_tensor(XQ_DTYPE_F32, {M, c.rows}, y.data());
  EXPECT_EQ(fx().vt().run_op(fx().p->state, &op), XQ_OK);
  fx().vt().qweight_release(fx().p->state, w);
  return y;
}

struct Case {
  uint32_t bits;
  int64_t gs;  // 0 = per channel
  bool sym, act_order;
};
// K = 300: not a multiple of 32, 64 or 128; N = 37: two whole panels of 16 and one of 5.
constexpr int64_t kN = 37, kK = 300;
const Case kCases[] = {{8, 0, true, false}, {8, 128, false, false}, {8, 32, true, true},
                       {4, 128, false, true}, {4, 32, true, false}, {4, 0, false, false}};

std::string describe(const Case& cs, int64_t M) {
  return "bits " + std::to_string(cs.bits) + " group " + std::to_string(cs.gs) + (cs.sym ? " sym" : " asym") +
         (cs.act_order ? " act-order" : "") + " M " + std::to_string(M);
}

// A canonical weight with dynamic per-token int8 activations (W8A8 / W4A8).
Canon w8a8_canon(uint32_t bits, int64_t gs, bool sym, bool act_order) {
  Canon c = make_canon(kN, kK, bits, gs, sym, act_order);
  c.t.act_scheme = XQ_ACT_DYNAMIC_TOKEN;
  c.t.act_bits = 8;
  return c;
}

// The scalar table, every M pair by pair (XQUANT_CPU_GEMV_ROWS large), with
// one more setting naming which pair kernels (env=value).
std::vector<float> scalar_pair_path(const Canon& c, const std::vector<float>& x, const std::vector<float>& bias,
                                    int64_t M, const char* env, const char* value) {
  ScopedEnv isa("XQUANT_CPU_ISA", "scalar");
  ScopedEnv rows("XQUANT_CPU_GEMV_ROWS", "100000");
  ScopedEnv kernels(env, value);
  return qmatmul(c, x, bias, M);
}

// The numbers W8A8 has always produced: exact int32 dots per group.
std::vector<float> w8a8_pair_reference(const Canon& c, const std::vector<float>& x, const std::vector<float>& bias,
                                       int64_t M) {
  return scalar_pair_path(c, x, bias, M, "XQUANT_CPU_W8A8_PREFILL", "integer");
}

// The numbers the q8 GEMV gives every row (dot4_q8 / dot8_q8): the reference
// for integer weight-only prefill.
std::vector<float> q8_pair_reference(const Canon& c, const std::vector<float>& x, const std::vector<float>& bias,
                                     int64_t M) {
  return scalar_pair_path(c, x, bias, M, "XQUANT_CPU_GEMV", "q8");
}

}  // namespace

// W8A8 prefill on the integer path (panels where the ISA has them) gives the
// per-pair path's bits on every ISA.
TEST(CpuQGemm, W8A8PrefillIsThePairPathBitForBit) {
  ScopedEnv integer("XQUANT_CPU_W8A8_PREFILL", "integer");
  for (const Case& cs : kCases) {
    const Canon c = w8a8_canon(cs.bits, cs.gs, cs.sym, cs.act_order);
    const auto bias = rnd_f(kN);
    for (int64_t M : {3, 17, 255}) {
      const auto x = rnd_f(static_cast<size_t>(M * kK), -3.0f, 3.0f);
      const std::vector<float> want = w8a8_pair_reference(c, x, bias, M);
      for (Isa isa : every_isa()) {
        ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
        EXPECT_EQ(qmatmul(c, x, bias, M), want) << cpu::isa_name(isa) << " " << describe(cs, M);
      }
    }
  }
}

// W8A8 prefill through SGEMM (the default for INT8 codes on AVX2, forced
// here on every ISA and for INT4 too): the same int8 activation images as
// the integer path, multiplied in F32, so within float rounding of the
// integer path's result: |diff| <= 2e-5 * (sum |x w| + |bias|), with x the
// float input (its int8 image differs by < 1% of the row's max).
TEST(CpuQGemm, W8A8PrefillBySgemmIsTheIntegerResultWithinFloatRounding) {
  for (const Case& cs : kCases) {
    const Canon c = w8a8_canon(cs.bits, cs.gs, cs.sym, cs.act_order);
    const auto bias = rnd_f(kN);
    for (int64_t M : {17, 255}) {
      const auto x = rnd_f(static_cast<size_t>(M * kK), -3.0f, 3.0f);
      const std::vector<float> want = w8a8_pair_reference(c, x, bias, M);
      ScopedEnv sgemm("XQUANT_CPU_W8A8_PREFILL", "sgemm");
      for (Isa isa : every_isa()) {
        ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
        const auto got = qmatmul(c, x, bias, M);
        double worst = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < kN; ++n) {
            double mag = std::fabs(bias[n]);
            for (int64_t k = 0; k < kK; ++k) mag += std::fabs(x[m * kK + k] * c.w(n, k));
            worst = std::max(worst, std::fabs(got[m * kN + n] - want[m * kN + n]) / (1e-3 + mag));
          }
        EXPECT_LE(worst, 2e-5) << cpu::isa_name(isa) << " " << describe(cs, M);
        EXPECT_GT(worst, 0.0) << "sgemm forced gave the integer path's bits: was it taken? " << cpu::isa_name(isa)
                              << " " << describe(cs, M);
      }
    }
  }
}

// Which path W8A8 prefill takes by default: SGEMM for INT8 codes on AVX2
// (bits differ from the integer path), the integer path for INT4 codes and
// on the other ISAs (the same bits); an unknown XQUANT_CPU_W8A8_PREFILL is
// refused at prepare, naming the variable.
TEST(CpuQGemm, W8A8PrefillDefaultPathPerIsaAndCodes) {
  for (uint32_t bits : {8u, 4u}) {
    const Canon c = w8a8_canon(bits, 32, true, false);
    const auto bias = rnd_f(kN);
    const int64_t M = 33;
    const auto x = rnd_f(static_cast<size_t>(M * kK), -3.0f, 3.0f);
    const std::vector<float> exact = w8a8_pair_reference(c, x, bias, M);
    for (Isa isa : every_isa()) {
      ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
      const bool sgemm_expected = bits == 8 && isa == Isa::avx2;
      EXPECT_EQ(qmatmul(c, x, bias, M) != exact, sgemm_expected)
          << cpu::isa_name(isa) << " bits " << bits << (sgemm_expected ? ": SGEMM expected" : ": integer path expected");
    }
  }
  ScopedEnv bad("XQUANT_CPU_W8A8_PREFILL", "fast");
  const Canon c = w8a8_canon(8, 32, true, false);
  xq_qweight* w = nullptr;
  EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &c.t, &w), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w, nullptr);
  EXPECT_NE(xquant::last_error().find("XQUANT_CPU_W8A8_PREFILL=fast"), std::string::npos) << xquant::last_error();
}

// Weight-only prefill (dequantized pieces + SGEMM): the same bits on every
// ISA, and the product of the dequantized weight within float rounding.
TEST(CpuQGemm, WeightOnlyPrefillMatchesReferenceOnEveryIsa) {
  // M = 3 takes the decode GEMV, whose default for INT4 weights quantizes
  // the activations to int8 (test_cpu_qkernels pins that): float
  // activations here, so the bound is float rounding for every M.
  ScopedEnv float_gemv("XQUANT_CPU_GEMV", "f32");
  const auto isas = vector_isas();
  for (const Case& cs : kCases) {
    const Canon c = make_canon(kN, kK, cs.bits, cs.gs, cs.sym, cs.act_order);
    const auto bias = rnd_f(kN);
    for (int64_t M : {3, 17, 255}) {
      const auto x = rnd_f(static_cast<size_t>(M * kK), -3.0f, 3.0f);
      std::vector<float> got;
      {
        ScopedEnv e("XQUANT_CPU_ISA", "scalar");
        got = qmatmul(c, x, bias, M);
      }
      double worst = 0;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < kN; ++n) {
          double ref = bias[n], mag = std::fabs(bias[n]);
          for (int64_t k = 0; k < kK; ++k) ref += x[m * kK + k] * c.w(n, k), mag += std::fabs(x[m * kK + k] * c.w(n, k));
          worst = std::max(worst, std::fabs(got[m * kN + n] - ref) / (1e-3 + mag));
        }
      // Float rounding of a 300-term sum relative to its magnitude.
      EXPECT_LE(worst, 2e-5) << describe(cs, M);
      if (M <= 4) continue;  // the decode GEMV: its ISAs differ in summation order (test_cpu_qkernels)
      for (Isa isa : isas) {
        ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
        EXPECT_EQ(qmatmul(c, x, bias, M), got) << cpu::isa_name(isa) << " " << describe(cs, M);
      }
    }
  }
}

// Integer weight-only prefill (XQUANT_CPU_PREFILL=int8) on the q8 panels:
// bit for bit the q8 pair dots of every row on each table that has them
// (scalar, AVX-512); AVX2's tiles within float rounding of them.
TEST(CpuQGemm, IntegerPrefillOnPanelsIsTheQ8PairPathBitForBit) {
  ScopedEnv int8("XQUANT_CPU_PREFILL", "int8");
  for (const Case& cs : kCases) {
    const Canon c = make_canon(kN, kK, cs.bits, cs.gs, cs.sym, cs.act_order);
    const auto bias = rnd_f(kN);
    for (int64_t M : {17, 255}) {
      const auto x = rnd_f(static_cast<size_t>(M * kK), -3.0f, 3.0f);
      const std::vector<float> want = q8_pair_reference(c, x, bias, M);
      for (Isa isa : every_isa()) {
        ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
        ScopedEnv gemv("XQUANT_CPU_GEMV", "q8");
        const auto got = qmatmul(c, x, bias, M);
        if (cpu::qgemm_kernels_of(isa).panel_q8) {
          EXPECT_EQ(got, want) << cpu::isa_name(isa) << " " << describe(cs, M);
          continue;
        }
        float scale = 0.0f;
        for (float v : want) scale = std::max(scale, std::fabs(v));
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_NEAR(got[i], want[i], 2e-6f * (1.0f + scale)) << cpu::isa_name(isa) << " " << describe(cs, M);
      }
    }
  }
}

// Which way weight-only prefill goes by default (XQUANT_CPU_PREFILL unset):
// the integer panels for weights whose decode takes q8 activations (the q8
// pair path's bits) on AVX-512, and on AVX2 for INT4 codes only (its INT8
// panels measured slower than SGEMM, qgemm_kernels_avx2.cpp); dequantize +
// SGEMM otherwise (float activations: different bits); an unknown value is
// refused, naming it.
TEST(CpuQGemm, WeightOnlyPrefillDefaultPathPerIsa) {
  for (uint32_t bits : {4u, 8u}) {
    const Canon c = make_canon(kN, kK, bits, 32, true, false);
    const auto bias = rnd_f(kN);
    const int64_t M = 33;
    const auto x = rnd_f(static_cast<size_t>(M * kK), -3.0f, 3.0f);
    const std::vector<float> q8 = q8_pair_reference(c, x, bias, M);
    for (Isa isa : every_isa()) {
      ScopedEnv e("XQUANT_CPU_ISA", cpu::isa_name(isa));
      const bool integer_expected = isa == Isa::avx512 || (isa == Isa::avx2 && bits == 4);
      EXPECT_EQ(qmatmul(c, x, bias, M) == q8, integer_expected)
          << cpu::isa_name(isa) << " bits " << bits << (integer_expected ? ": integer panels expected" : ": SGEMM expected");
      ScopedEnv f32("XQUANT_CPU_GEMV", "f32");  // float decode: float prefill too
      EXPECT_NE(qmatmul(c, x, bias, M), q8) << cpu::isa_name(isa) << " bits " << bits << " with f32 decode";
    }
  }
  ScopedEnv bad("XQUANT_CPU_PREFILL", "fast");
  const Canon c = make_canon(kN, kK, 4, 32, true, false);
  xq_qweight* w = nullptr;
  EXPECT_EQ(fx().vt().qweight_prepare(fx().p->state, &c.t, &w), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(w, nullptr);
  EXPECT_NE(xquant::last_error().find("XQUANT_CPU_PREFILL=fast"), std::string::npos) << xquant::last_error();
}
