// test_cpu_qgemv_rows.cpp: the row-range int8-activation GEMV of packed
// INT4/INT8 weights (plugins/cpu/src/qgemv_rows.hpp), the decode path of
// XQUANT_CPU_GEMV=q8.
//   1. quantize_acts: codes within half a step of x, llama.cpp's scale
//      (max|x| / 127), the offset lane of every block, the group sums.
//   2. The scalar table against a double-precision evaluation of the
//      header's formula from the same codes and activations.
//   3. Each ISA table (AVX2, AVX-512 VNNI) against the scalar one on fresh
//      random codes, activations, scales, zero points and bias, random group
//      splits (1..5 blocks a group: odd and even, a single block), INT4 and
//      INT8, over a sub-range of the rows (rows outside it untouched), and
//      rows counts 1, 3, 17 (and 8, 24).
//   4. The eight-row INT4 kernels (qgemv_rows8.hpp, AVX2 and AVX-512 VNNI)
//      the same way: whole groups of eight rows and one-row tails.
// A table the CPU lacks is skipped with a message naming it.
#include "qgemv_rows.hpp"
#include "qgemv_rows8.hpp"
#include "qkernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
using xquant::cpu::Isa;

namespace {

std::mt19937 rng(20261201);

std::vector<int64_t> random_groups(int64_t nblk) {
  std::uniform_int_distribution<int64_t> d(1, 5);
  std::vector<int64_t> bb{0};
  while (bb.back() < nblk) bb.push_back(std::min(nblk, bb.back() + d(rng)));
  return bb;
}

std::vector<float> rnd_f(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A random weight of N rows over nblk blocks, and one activation row.
struct Case {
  bool int4 = true, zeros = false;
  int64_t N = 0, nblk = 0, G = 0, row_bytes = 0;
  std::vector<int64_t> bb;
  std::vector<uint8_t> codes;
  std::vector<float> scales, zps, bias, x;
  cpu::Rows8Copy rows8;  // interleave_rows8's copy, when a test made one
  cpu::PackedRows rows() const {
    return {codes.data(), row_bytes, scales.data(), zeros ? zps.data() : nullptr, bb.data(), G, bias.data(),
            rows8.codes.empty() ? nullptr : rows8.codes.data(), rows8.scales.empty() ? nullptr : rows8.scales.data()};
  }
};

Case make_case(bool int4, bool zeros, int64_t N, int64_t nblk) {
  Case c;
  c.int4 = int4, c.zeros = zeros, c.N = N, c.nblk = nblk;
  c.bb = random_groups(nblk);
  c.G = static_cast<int64_t>(c.bb.size()) - 1;
  c.row_bytes = nblk * (int4 ? 16 : 32);
  std::uniform_int_distribution<int> byte(0, 255);
  c.codes.resize(static_cast<size_t>(N * c.row_bytes));
  for (auto& b : c.codes) b = static_cast<uint8_t>(byte(rng));
  c.scales = rnd_f(static_cast<size_t>(N * c.G), 0.001f, 0.05f);
  c.zps = rnd_f(static_cast<size_t>(N * c.G), -3.0f, 3.0f);
  c.bias = rnd_f(static_cast<size_t>(N), -1.0f, 1.0f);
  c.x = rnd_f(static_cast<size_t>(nblk * 32), -2.0f, 2.0f);
  // A block of zeros and one with a single large value: the scale's edge cases.
  if (nblk > 2) {
    std::fill(c.x.begin() + 32, c.x.begin() + 64, 0.0f);
    c.x[70] = 40.0f;
  }
  return c;
}

int code_at(const Case& c, int64_t n, int64_t col) {
  const uint8_t* row = c.codes.data() + n * c.row_bytes;
  if (!c.int4) return static_cast<int8_t>(row[col]);
  const int64_t b = col / 32, i = col % 32;
  const uint8_t v = row[b * 16 + (i % 16)];
  return (i < 16 ? (v & 0x0F) : (v >> 4)) - 8;
}

TEST(CpuQGemvRows, QuantizedActivationsAreWhatTheHeaderSays) {
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    const cpu::GemvRowsKernels& t = cpu::gemv_rows_of(isa);
    for (bool int4 : {true, false}) {
      Case c = make_case(int4, true, 1, 9);
      cpu::QuantizedActsBuffers buf;
      cpu::QuantizedActs a = cpu::quantize_acts(t, int4, c.x.data(), c.nblk, c.bb.data(), c.G, true, buf);
      const int32_t offset = int4 ? t.offset4 : t.offset8;
      for (int64_t b = 0; b < c.nblk; ++b) {
        float amax = 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(c.x[b * 32 + i])), sum += a.q[b * 32 + i];
        EXPECT_EQ(a.sa8[b * 8], amax / 127.0f) << "block " << b;
        for (int l = 0; l < 8; ++l) EXPECT_EQ(a.sa8[b * 8 + l], a.sa8[b * 8]);
        EXPECT_EQ(a.corr[b * 8], offset * sum) << t.name << " block " << b;
        EXPECT_EQ(a.sa[b], a.sa8[b * 8]) << "block " << b;
        EXPECT_EQ(a.corr1[b], offset * sum) << t.name << " block " << b;
        for (int l = 1; l < 8; ++l) EXPECT_EQ(a.corr[b * 8 + l], 0);
        for (int i = 0; i < 32; ++i) {
          EXPECT_LE(std::abs(static_cast<int>(a.q[b * 32 + i])), 127);
          EXPECT_LE(std::fabs(c.x[b * 32 + i] - a.sa8[b * 8] * a.q[b * 32 + i]), a.sa8[b * 8] * 0.5f * 1.0001f + 1e-30f);
        }
      }
      for (int64_t g = 0; g < c.G; ++g) {
        double want = 0.0;
        for (int64_t b = c.bb[g]; b < c.bb[g + 1]; ++b)
          for (int i = 0; i < 32; ++i) want += static_cast<double>(a.sa8[b * 8]) * a.q[b * 32 + i];
        EXPECT_NEAR(a.gsum[g], want, 1e-5 * (1.0 + std::fabs(want))) << "group " << g;
      }
    }
  }
}

TEST(CpuQGemvRows, ScalarIsTheHeadersFormula) {
  for (bool int4 : {true, false})
    for (bool zeros : {false, true}) {
      Case c = make_case(int4, zeros, 7, 11);
      cpu::QuantizedActsBuffers buf;
      const cpu::GemvRowsKernels& t = cpu::kScalarGemvRows;
      cpu::QuantizedActs a = cpu::quantize_acts(t, int4, c.x.data(), c.nblk, c.bb.data(), c.G, zeros, buf);
      std::vector<float> y(static_cast<size_t>(c.N));
      (int4 ? t.gemv4 : t.gemv8)(c.rows(), a, 0, c.N, y.data());
      for (int64_t n = 0; n < c.N; ++n) {
        double want = c.bias[n], mag = std::fabs(c.bias[n]);
        for (int64_t g = 0; g < c.G; ++g)
          for (int64_t b = c.bb[g]; b < c.bb[g + 1]; ++b)
            for (int i = 0; i < 32; ++i) {
              const double z = zeros ? c.zps[n * c.G + g] : 0.0;
              const double term = c.scales[n * c.G + g] * (code_at(c, n, b * 32 + i) - z) *
                                  static_cast<double>(a.sa8[b * 8]) * a.q[b * 32 + i];
              want += term, mag += std::fabs(term);
            }
        EXPECT_NEAR(y[n], want, 1e-5 * (1.0 + mag)) << (int4 ? "int4" : "int8") << (zeros ? " asym" : " sym") << " row " << n;
      }
    }
}

// Table `isa` against the scalar one: rows [1, N - 1) of N (the first and
// last untouched), every combination of INT4/INT8 and zero points.
void expect_table_matches_scalar(const cpu::GemvRowsKernels& t, bool interleaved = false) {
  // 1, 3, 17 rows computed; 8 and 24: whole groups of the eight-row kernels
  // (17: two groups and a one-row tail).
  for (int64_t N : {3, 5, 10, 19, 26})
    for (int64_t nblk : {1, 2, 3, 10, 37})
      for (bool int4 : {true, false})
        for (bool zeros : {false, true}) {
          Case c = make_case(int4, zeros, N, nblk);
          if (interleaved)
            c.rows8 = int4 ? cpu::interleave_rows8(c.codes.data(), c.row_bytes, c.scales.data(), N, c.G, nblk)
                           : cpu::interleave_int8_rows8(c.codes.data(), c.row_bytes, c.scales.data(), N, c.G, nblk);
          cpu::QuantizedActsBuffers bs, bt;
          const cpu::QuantizedActs as =
              cpu::quantize_acts(cpu::kScalarGemvRows, int4, c.x.data(), nblk, c.bb.data(), c.G, zeros, bs);
          const cpu::QuantizedActs at = cpu::quantize_acts(t, int4, c.x.data(), nblk, c.bb.data(), c.G, zeros, bt);
          std::vector<float> ys(static_cast<size_t>(N), -7.0f), yt(static_cast<size_t>(N), -7.0f);
          (int4 ? cpu::kScalarGemvRows.gemv4 : cpu::kScalarGemvRows.gemv8)(c.rows(), as, 1, N - 1, ys.data());
          (int4 ? t.gemv4 : t.gemv8)(c.rows(), at, 1, N - 1, yt.data());
          const std::string where = std::string(t.name) + (int4 ? " int4" : " int8") + (zeros ? " asym" : " sym") +
                                    " N " + std::to_string(N) + " blocks " + std::to_string(nblk) + " groups " +
                                    std::to_string(c.G);
          EXPECT_EQ(yt[0], -7.0f) << where;
          EXPECT_EQ(yt[N - 1], -7.0f) << where;
          for (int64_t n = 1; n < N - 1; ++n) {
            // Same integers, float sums in another order: the bound is float
            // rounding of the row's magnitude.
            double mag = std::fabs(c.bias[n]);
            for (int64_t g = 0; g < c.G; ++g)
              for (int64_t b = c.bb[g]; b < c.bb[g + 1]; ++b)
                for (int i = 0; i < 32; ++i)
                  mag += std::fabs(c.scales[n * c.G + g] * (code_at(c, n, b * 32 + i) - (zeros ? c.zps[n * c.G + g] : 0.0)) *
                                   static_cast<double>(as.sa8[b * 8]) * as.q[b * 32 + i]);
            EXPECT_NEAR(yt[n], ys[n], 2e-6 * (1.0 + mag)) << where << " row " << n;
          }
        }
}

TEST(CpuQGemvRows, Avx2MatchesScalar) {
  if (!cpu::cpu_has(Isa::avx2)) GTEST_SKIP() << "this CPU lacks avx2: its row GEMV not tested";
  expect_table_matches_scalar(cpu::gemv_rows_of(Isa::avx2));
}

TEST(CpuQGemvRows, Avx512VnniMatchesScalar) {
  if (!cpu::cpu_has(Isa::avx512)) GTEST_SKIP() << "this CPU lacks avx512: its row GEMV not tested";
  expect_table_matches_scalar(cpu::gemv_rows_of(Isa::avx512));
}

// The eight-row INT4 kernels (qgemv_rows8.hpp) through the tables the
// provider takes with XQUANT_CPU_GEMV_ROWS8=transpose / interleaved (the
// latter on interleave_rows8's copy, and without one: the transpose); their
// INT8 entries are the one-row kernels, except AVX-512's interleaved table,
// whose gemv8 reads interleave_int8_rows8's copy (the one-row kernel without).
TEST(CpuQGemvRows, EightRowTablesMatchScalar) {
  using cpu::Rows8Mode;
  for (Rows8Mode m : {Rows8Mode::off, Rows8Mode::transpose, Rows8Mode::interleaved})
    EXPECT_EQ(&cpu::gemv_rows_table(Isa::scalar, m), &cpu::kScalarGemvRows);
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    EXPECT_EQ(&cpu::gemv_rows_table(isa, Rows8Mode::off), &cpu::gemv_rows_of(isa));
    for (Rows8Mode m : {Rows8Mode::transpose, Rows8Mode::interleaved}) {
      const cpu::GemvRowsKernels& t = cpu::gemv_rows_table(isa, m);
      EXPECT_NE(t.gemv4, cpu::gemv_rows_of(isa).gemv4) << t.name;
      const bool int8_rows8 = isa == Isa::avx512 && m == Rows8Mode::interleaved;
      EXPECT_EQ(t.gemv8 == cpu::gemv_rows_of(isa).gemv8, !int8_rows8) << t.name;
      if (!cpu::cpu_has(isa)) {
        std::printf("this CPU lacks %s: its eight-row INT4 GEMV %s not tested\n", cpu::isa_name(isa), t.name);
        continue;
      }
      expect_table_matches_scalar(t, false);
      if (m == Rows8Mode::interleaved) expect_table_matches_scalar(t, true);
    }
  }
}

// Whether copy r of case c is the layout qgemv_rows8.hpp states: every row's
// code_bytes per block as 4-byte words side by side (row j's word k at
// 32 k + 4 j of its group's block), each byte XOR flip, and the group
// scales eight a group; row j of group r8 given back by back(r8, j) when
// that is set.
void expect_rows8_layout(const Case& c, const cpu::Rows8Copy& r, int64_t N, int64_t code_bytes, uint8_t flip,
                         const std::function<const uint8_t*(int64_t, int64_t)>& back = nullptr) {
  const int64_t groups = N / 8, block8 = 8 * code_bytes;
  ASSERT_EQ(r.codes.size(), static_cast<size_t>(groups * c.nblk * block8)) << N;
  ASSERT_EQ(r.scales.size(), static_cast<size_t>(groups * c.G * 8)) << N;
  for (int64_t r8 = 0; r8 < groups; ++r8)
    for (int64_t j = 0; j < 8; ++j) {
      const uint8_t* row = c.codes.data() + (r8 * 8 + j) * c.row_bytes;
      for (int64_t b = 0; b < c.nblk; ++b)
        for (int64_t byte = 0; byte < code_bytes; ++byte)
          ASSERT_EQ(r.codes[(r8 * c.nblk + b) * block8 + 32 * (byte / 4) + 4 * j + byte % 4],
                    static_cast<uint8_t>(row[b * code_bytes + byte] ^ flip))
              << "rows " << N << " group " << r8 << " row " << j << " block " << b << " byte " << byte;
      for (int64_t g = 0; g < c.G; ++g)
        ASSERT_EQ(r.scales[(r8 * c.G + g) * 8 + j], c.scales[(r8 * 8 + j) * c.G + g]);
      if (back) {
        EXPECT_EQ(0, std::memcmp(back(r8, j), row, static_cast<size_t>(c.row_bytes)))
            << "rows " << N << " group " << r8 << " row " << j;
      }
    }
}

// interleave_rows8's copy is the layout its header states, byte for byte.
TEST(CpuQGemvRows, InterleavedCopyIsTheStatedLayout) {
  for (int64_t N : {7, 8, 17, 24}) {
    Case c = make_case(true, false, N, 5);
    expect_rows8_layout(c, cpu::interleave_rows8(c.codes.data(), c.row_bytes, c.scales.data(), N, c.G, c.nblk), N, 16, 0);
  }
}

}  // namespace

// interleave_int8_rows8's copy is the layout its header states, byte for
// byte, and int8_row_from_rows8 gives every row of it back.
TEST(CpuQGemvRows, Int8InterleavedCopyIsTheStatedLayout) {
  for (int64_t N : {7, 8, 17, 24}) {
    Case c = make_case(false, false, N, 5);
    const cpu::Rows8Copy r = cpu::interleave_int8_rows8(c.codes.data(), c.row_bytes, c.scales.data(), N, c.G, c.nblk);
    std::vector<uint8_t> row(static_cast<size_t>(c.row_bytes));
    expect_rows8_layout(c, r, N, 32, 0x80, [&](int64_t r8, int64_t j) {
      cpu::int8_row_from_rows8(r.codes.data(), c.nblk, r8, j, row.data());
      return row.data();
    });
  }
}

// W8A8 decode on the INT8 copy (w8a8_rows8_interleaved_avx512) against the
// scalar table's dot8_i8 per row, bit for bit (the same exact group integers,
// scaled and summed in the same order): 1..9 activation rows (passes of
// four, three and one), per-channel and grouped weights, codes -127..127,
// activation codes the full -128..127 (static scales), 1 to 37 blocks;
// only the whole groups' outputs written.
TEST(CpuQGemvRows, W8A8EightRowKernelIsDot8BitForBit) {
  if (!cpu::cpu_has(Isa::avx512)) GTEST_SKIP() << "this CPU lacks avx512: the eight-row W8A8 kernel not tested";
  std::uniform_int_distribution<int> wcode(-127, 127), acode(-128, 127);
  for (int64_t N : {8, 16, 27})
    for (int64_t nblk : {1, 3, 10, 37})
      for (bool grouped : {false, true})
        for (int64_t M : {1, 4, 6, 9}) {
          Case c = make_case(false, false, N, nblk);
          if (!grouped) {
            c.bb = {0, nblk};
            c.G = 1;
            c.scales.resize(static_cast<size_t>(N));
          }
          for (auto& b : c.codes) b = static_cast<uint8_t>(static_cast<int8_t>(wcode(rng)));
          const int64_t Kp = nblk * 32;
          std::vector<int8_t> q(static_cast<size_t>(M * Kp));
          for (auto& v : q) v = static_cast<int8_t>(acode(rng));
          std::vector<int32_t> qsum(static_cast<size_t>(M * c.G), 0);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t g = 0; g < c.G; ++g)
              for (int64_t i = c.bb[g] * 32; i < c.bb[g + 1] * 32; ++i) qsum[m * c.G + g] += q[m * Kp + i];
          const cpu::Rows8Copy r = cpu::interleave_int8_rows8(c.codes.data(), c.row_bytes, c.scales.data(), N, c.G, nblk);
          std::vector<float> acc(static_cast<size_t>(M * N), -7.0f);
          cpu::w8a8_rows8_interleaved_avx512(r.codes.data(), r.scales.data(), c.bb.data(), c.G, q.data(), Kp,
                                             qsum.data(), M, 0, N / 8, acc.data(), N);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              const std::string where = "N " + std::to_string(N) + " blocks " + std::to_string(nblk) + " groups " +
                                        std::to_string(c.G) + " M " + std::to_string(M) + " row " + std::to_string(m) +
                                        " col " + std::to_string(n);
              if (n >= N / 8 * 8) {
                EXPECT_EQ(acc[m * N + n], -7.0f) << where;
                continue;
              }
              const float want = cpu::kScalarKernels.dot8_i8(reinterpret_cast<const int8_t*>(c.codes.data() + n * c.row_bytes),
                                                             q.data() + m * Kp, c.bb.data(), c.G, c.scales.data() + n * c.G);
              EXPECT_EQ(acc[m * N + n], want) << where;
            }
        }
}
