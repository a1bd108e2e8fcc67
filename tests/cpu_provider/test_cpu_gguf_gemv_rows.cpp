// test_cpu_gguf_gemv_rows.cpp: the row-range GGUF decode GEMVs
// (plugins/cpu/src/gguf_gemv_rows.hpp: Q4_0, Q8_0 and Q4_K on AVX-512 VNNI)
// against a double-precision product of the loader's own decoder
// (plugins/gguf/gguf_types.cpp) with the quantized activation row, on fresh
// random blocks: 1, 3 and 17 rows, 1..18 blocks (odd counts take the single
// block tail; Q4_K blocks of 256 columns), bias or none, outputs outside the range untouched. The same
// random inputs also go through the per-row kernel of every ISA the CPU has,
// so the two paths agree. AVX2 has the Q4_K one; a CPU without AVX2 or
// AVX-512 VNNI skips those kernels, naming them. The eight-row Q4_0 kernels
// (qgemv_rows8.hpp's register transpose, AVX2 and AVX-512) take the same
// checks with 8 and 16 rows added (whole groups of eight) beside 1, 3, 17;
// the interleaved-copy kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K on
// AVX2 and AVX-512, Q8_0 on AVX-512) on row ranges inside and on groups of eight.
#include "../support/test_seed.hpp"
#include "gguf_blocks.hpp"
#include "gguf_gemv_rows.hpp"
#include "gguf_types.hpp"
#include "qgemv_rows8.hpp"
#include "qkernels.hpp"

#include <xquant/sdk/half.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace xquant;
using xquant::cpu::Isa;

namespace {

// Fresh inputs every run; the seed is printed so a failure can be replayed.
std::mt19937 rng(test::seed_from_env_or_fresh("test_cpu_gguf_gemv_rows"));

float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

// rows x nb random blocks of `type`: random code bytes, f16 scales as real
// files have them (Q4_K: d and dmin non-negative, the 6-bit scales random;
// Q6_K: the int8 sub-block scales random).
std::vector<uint8_t> random_rows(uint32_t type, int64_t rows, int64_t nb) {
  const gguf::TypeInfo* ti = gguf::type_info(type);
  std::vector<uint8_t> w(static_cast<size_t>(rows * nb) * ti->type_size);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < rows * nb; ++b) {
    uint8_t* p = w.data() + b * ti->type_size;
    const uint16_t h = sdk::f32_to_f16(type == gguf::kQ4_K ? uniform(0.0f, 0.01f) : uniform(-0.05f, 0.05f));
    std::memcpy(type == gguf::kQ6_K ? p + 208 : p, &h, 2);  // Q6_K: ql, qh and scales first, d last
    if (type == gguf::kQ4_K || type == gguf::kQ4_1 || type == gguf::kQ5_1) {  // dmin / m
      const uint16_t hm = sdk::f32_to_f16(type == gguf::kQ4_K ? uniform(0.0f, 0.01f) : uniform(-0.05f, 0.05f));
      std::memcpy(p + 2, &hm, 2);
    }
    if (type == gguf::kQ8_0)  // ggml's quantize_row_q8_0 never writes -128
      for (int j = 0; j < 32; ++j)
        if (static_cast<int8_t>(p[2 + j]) == -128) p[2 + j] = 0x81;
  }
  return w;
}

struct Activation {
  std::vector<float> x, d32, d256;
  std::vector<int8_t> q, q256;
  std::vector<int16_t> s32, bs;
  cpu::QuantizedRow row() const {
    return {q.data(), d32.data(), d256.empty() ? nullptr : d256.data(), q256.empty() ? nullptr : q256.data(),
            bs.empty() ? nullptr : bs.data(), s32.data()};
  }
};

Activation random_activation(int64_t K) {
  Activation a;
  a.x.resize(K);
  for (auto& v : a.x) v = uniform(-2.0f, 2.0f);
  if (K >= 64) a.x[static_cast<size_t>(K / 2)] = 40.0f;                // an outlier block
  if (K >= 96) std::fill(a.x.begin() + 64, a.x.begin() + 96, 0.0f);  // an all-zero block
  a.q.resize(K), a.d32.resize(K / 32), a.s32.resize(K / 32);
  if (K % 256 == 0) a.q256.resize(K), a.d256.resize(K / 256), a.bs.resize(K / 16);
  cpu::quantize_row_blocks(a.x.data(), K, a.q.data(), a.d32.data(), a.s32.data(), a.q256.empty() ? nullptr : a.q256.data(),
                           a.d256.empty() ? nullptr : a.d256.data(), a.bs.empty() ? nullptr : a.bs.data());
  return a;
}

const cpu::BlockKernels& per_row_table(Isa isa) {
  return isa == Isa::avx512 ? cpu::kAvx512BlockKernels : isa == Isa::avx2 ? cpu::kAvx2BlockKernels : cpu::kScalarBlockKernels;
}

TEST(CpuGgufGemvRows, WhichTypesHaveOne) {
  for (uint32_t type : {gguf::kQ4_1, gguf::kQ5_0, gguf::kQ5_1, gguf::kQ5_K, gguf::kQ6_K})
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
      EXPECT_EQ(cpu::block_rows_kernel(isa, type, false), nullptr) << gguf::type_info(type)->name;
  for (uint32_t type : {gguf::kQ4_0, gguf::kQ8_0, gguf::kQ4_K}) EXPECT_EQ(cpu::block_rows_kernel(Isa::scalar, type, false), nullptr);
  EXPECT_EQ(cpu::block_rows_kernel(Isa::avx2, gguf::kQ4_0, false), nullptr);
  EXPECT_EQ(cpu::block_rows_kernel(Isa::avx2, gguf::kQ8_0, false), nullptr);
  EXPECT_NE(cpu::block_rows_kernel(Isa::avx2, gguf::kQ4_K, false), nullptr);
  for (uint32_t type : {gguf::kQ4_0, gguf::kQ8_0, gguf::kQ4_K}) EXPECT_NE(cpu::block_rows_kernel(Isa::avx512, type, false), nullptr);
  // rows8: Q4_0 takes the eight-row kernels on AVX2 and AVX-512, the rest is as without.
  EXPECT_EQ(cpu::block_rows_kernel(Isa::scalar, gguf::kQ4_0, true), nullptr);
  EXPECT_EQ(cpu::block_rows_kernel(Isa::avx2, gguf::kQ4_0, true), cpu::kAvx2Q4_0Rows8);
  EXPECT_EQ(cpu::block_rows_kernel(Isa::avx512, gguf::kQ4_0, true), cpu::kAvx512Q4_0Rows8);
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    for (uint32_t type : {gguf::kQ8_0, gguf::kQ4_K})
      EXPECT_EQ(cpu::block_rows_kernel(isa, type, true), cpu::block_rows_kernel(isa, type, false));
}

void expect_rows_kernels_match(Isa rows_isa, bool rows8) {
  for (uint32_t type : {gguf::kQ4_0, gguf::kQ8_0, gguf::kQ4_K}) {
    const gguf::TypeInfo* ti = gguf::type_info(type);
    const cpu::BlockRowsKernel kernel = cpu::block_rows_kernel(rows_isa, type, rows8);
    if (!kernel || (rows8 && type != gguf::kQ4_0)) continue;
    // 8 and 16: whole groups of eight rows; 3 and 17: with the one-row tail.
    for (int64_t rows : {1, 3, 8, 16, 17})
      for (int64_t nb : {1, 2, 3, 4, 5, 17, 18})
        for (bool with_bias : {false, true}) {
          const int64_t K = nb * ti->block_size;
          const bool kq = ti->block_size == 256;
          const std::vector<uint8_t> w = random_rows(type, rows, nb);
          const Activation a = random_activation(K);
          std::vector<float> bias(static_cast<size_t>(rows));
          for (auto& b : bias) b = uniform(-1.0f, 1.0f);
          // y[0] and y[rows + 1] are guards.
          std::vector<float> y(static_cast<size_t>(rows + 2), -7.0f);
          kernel(w.data(), ti->type_size * nb, rows, a.row(), nb, y.data() + 1, with_bias ? bias.data() : nullptr);
          const std::string where = std::string(cpu::isa_name(rows_isa)) + (rows8 ? " rows8 " : " ") + ti->name + " rows " + std::to_string(rows) + " blocks " +
                                    std::to_string(nb) + (with_bias ? " bias" : "");
          EXPECT_EQ(y[0], -7.0f) << where;
          EXPECT_EQ(y[rows + 1], -7.0f) << where;
          std::vector<float> wf(static_cast<size_t>(K));
          for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* wr = w.data() + r * ti->type_size * nb;
            ASSERT_TRUE(gguf::dequantize_row(type, wr, wf.data(), K));
            double want = with_bias ? bias[r] : 0.0, mag = std::fabs(want);
            for (int64_t i = 0; i < K; ++i) {
              const double t = kq ? static_cast<double>(wf[i]) * a.d256[i / 256] * a.q256[i]
                                  : static_cast<double>(wf[i]) * a.d32[i / 32] * a.q[i];
              want += t, mag += std::fabs(t);
            }
            EXPECT_NEAR(y[r + 1], want, 1e-5 * (1.0 + mag)) << where << " row " << r;
            for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
              if (!cpu::cpu_has(isa)) continue;
              const float per_row = cpu::block_kernel(per_row_table(isa), type)(wr, a.row(), nb) +
                                    (with_bias ? bias[r] : 0.0f);
              EXPECT_NEAR(y[r + 1], per_row, 1e-5 * (1.0 + mag)) << where << " row " << r << " vs " << cpu::isa_name(isa);
            }
          }
        }
  }
}

TEST(CpuGgufGemvRows, Avx2MatchesTheDecoderAndThePerRowKernels) {
  if (!cpu::cpu_has(Isa::avx2)) GTEST_SKIP() << "this CPU lacks avx2: the Q4_K row-range kernel on it not tested";
  expect_rows_kernels_match(Isa::avx2, false);
}

TEST(CpuGgufGemvRows, Avx512MatchesTheDecoderAndThePerRowKernels) {
  if (!cpu::cpu_has(Isa::avx512)) GTEST_SKIP() << "this CPU lacks avx512: the Q4_0 / Q8_0 / Q4_K row-range kernels not tested";
  expect_rows_kernels_match(Isa::avx512, false);
}

TEST(CpuGgufGemvRows, Q4_0EightRowKernelsMatchTheDecoderAndThePerRowKernels) {
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: its eight-row Q4_0 kernel not tested\n", cpu::isa_name(isa));
      continue;
    }
    expect_rows_kernels_match(isa, true);
  }
}

// The interleaved-copy kernels (qgemv_rows8.hpp interleave_q4_0_rows8,
// interleave_q4_k_rows8, interleave_q6_k_rows8, interleave_q8_0_rows8;
// XQUANT_CPU_GEMV_ROWS8=interleaved): part rows
// [r0, r1) for ranges that start and end inside or on a group of eight,
// against the double product of the loader's decoder; outputs outside the
// range untouched; the copies, which replace the stored rows, give back every
// row's stored bytes.
void expect_interleaved_kernel_matches(Isa isa, uint32_t type) {
  const gguf::TypeInfo* ti = gguf::type_info(type);
  const cpu::BlockRows8Kernel kernel = cpu::block_rows8_kernel(isa, type);
  ASSERT_NE(kernel, nullptr) << cpu::isa_name(isa) << " " << ti->name;
  const bool kq = ti->block_size == 256;
  for (int64_t rows : {3, 8, 17, 24})
    for (int64_t nb : kq ? std::vector<int64_t>{1, 2, 3} : std::vector<int64_t>{1, 2, 5, 18})
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, rows}, {1, rows}, {0, rows - 1}, {1, rows - 1}}) {
        if (r0 >= r1) continue;
        const int64_t K = nb * ti->block_size;
        const uint64_t row_bytes = ti->type_size * nb;
        const std::vector<uint8_t> w = random_rows(type, rows, nb);
        const bool legacy = type == gguf::kQ4_1 || type == gguf::kQ5_0 || type == gguf::kQ5_1;
        cpu::Q4_0Rows8Copy c;
        if (legacy) c.codes = cpu::interleave_legacy_rows8(type, w.data(), row_bytes, rows, nb);
        else if (type == gguf::kQ4_K) c.codes = cpu::interleave_q4_k_rows8(w.data(), row_bytes, rows, nb);
        else if (type == gguf::kQ6_K) c.codes = cpu::interleave_q6_k_rows8(w.data(), row_bytes, rows, nb);
        else if (type == gguf::kQ8_0) c = cpu::interleave_q8_0_rows8(w.data(), row_bytes, rows, nb);
        else c = cpu::interleave_q4_0_rows8(w.data(), row_bytes, rows, nb);
        if (r0 == 0 && r1 == rows)  // the copy gives back each row's stored bytes exactly
          for (int64_t r = 0; r < rows / 8 * 8; ++r) {
            std::vector<uint8_t> back(row_bytes);
            if (legacy) cpu::legacy_row_from_rows8(type, c.codes.data(), r / 8, r % 8, nb, back.data());
            else if (type == gguf::kQ4_K) cpu::q4_k_row_from_rows8(c.codes.data(), r / 8, r % 8, nb, back.data());
            else if (type == gguf::kQ6_K) cpu::q6_k_row_from_rows8(c.codes.data(), r / 8, r % 8, nb, back.data());
            else if (type == gguf::kQ8_0) cpu::q8_0_row_from_rows8(c.codes.data(), c.scales.data(), r / 8, r % 8, nb, back.data());
            else cpu::q4_0_row_from_rows8(c.codes.data(), c.scales.data(), r / 8, r % 8, nb, back.data());
            EXPECT_EQ(0, std::memcmp(back.data(), w.data() + r * row_bytes, row_bytes)) << ti->name << " row " << r;
          }
        const Activation a = random_activation(K);
        std::vector<float> bias(static_cast<size_t>(rows));
        for (auto& b : bias) b = uniform(-1.0f, 1.0f);
        std::vector<float> y(static_cast<size_t>(rows), -7.0f);
        kernel(w.data(), row_bytes, c.codes.data(), c.scales.data(), r0, r1, a.row(), nb, y.data(), bias.data());
        const std::string where = std::string(cpu::isa_name(isa)) + " " + ti->name + " rows " + std::to_string(rows) +
                                  " [" + std::to_string(r0) + ", " + std::to_string(r1) + ") blocks " + std::to_string(nb);
        std::vector<float> wf(static_cast<size_t>(K));
        for (int64_t r = 0; r < rows; ++r) {
          if (r < r0 || r >= r1) {
            EXPECT_EQ(y[r], -7.0f) << where << " row " << r;
            continue;
          }
          ASSERT_TRUE(gguf::dequantize_row(type, w.data() + r * row_bytes, wf.data(), K));
          double want = bias[r], mag = std::fabs(want);
          for (int64_t i = 0; i < K; ++i) {
            const double t = kq ? static_cast<double>(wf[i]) * a.d256[i / 256] * a.q256[i]
                                : static_cast<double>(wf[i]) * a.d32[i / 32] * a.q[i];
            want += t, mag += std::fabs(t);
          }
          EXPECT_NEAR(y[r], want, 1e-5 * (1.0 + mag)) << where << " row " << r;
        }
      }
}

TEST(CpuGgufGemvRows, InterleavedKernelsMatchTheDecoder) {
  EXPECT_EQ(cpu::block_rows8_kernel(Isa::scalar, gguf::kQ4_0), nullptr);
  EXPECT_EQ(cpu::block_rows8_kernel(Isa::scalar, gguf::kQ4_K), nullptr);
  EXPECT_EQ(cpu::block_rows8_kernel(Isa::scalar, gguf::kQ5_0), nullptr);
  EXPECT_EQ(cpu::block_rows8_kernel(Isa::avx2, gguf::kQ5_K), nullptr);  // no copy of its own
  EXPECT_EQ(cpu::block_rows8_kernel(Isa::avx2, gguf::kQ8_0), nullptr);  // AVX-512 VNNI only
  // Q4_K, Q6_K: an AVX-512 build of their own (Q6_K through vpdpbusd).
  for (uint32_t type : {gguf::kQ4_K, gguf::kQ6_K})
    EXPECT_NE(cpu::block_rows8_kernel(Isa::avx512, type), cpu::block_rows8_kernel(Isa::avx2, type));
  const std::pair<Isa, uint32_t> kernels[] = {{Isa::avx2, gguf::kQ4_0},   {Isa::avx512, gguf::kQ4_0},
                                              {Isa::avx2, gguf::kQ4_K},   {Isa::avx2, gguf::kQ6_K},
                                              {Isa::avx512, gguf::kQ4_K}, {Isa::avx512, gguf::kQ6_K},
                                              {Isa::avx512, gguf::kQ8_0}, {Isa::avx2, gguf::kQ4_1},
                                              {Isa::avx2, gguf::kQ5_0},   {Isa::avx2, gguf::kQ5_1},
                                              {Isa::avx512, gguf::kQ4_1}, {Isa::avx512, gguf::kQ5_0},
                                              {Isa::avx512, gguf::kQ5_1}};
  for (auto [isa, type] : kernels) {
    if (!cpu::cpu_has(isa)) {
      std::printf("this CPU lacks %s: its interleaved %s kernel not tested\n", cpu::isa_name(isa), gguf::type_info(type)->name);
      continue;
    }
    expect_interleaved_kernel_matches(isa, type);
  }
}

// The AVX-512 Q4_K and Q6_K kernels form the AVX2 ones' integers another
// way (vpdpbusd and one vpmulld per sub-block, gguf_q4_k_rows8.inc,
// gguf_q6_k_rows8.inc), the Q4_1 / Q5_0 / Q5_1 ones too (vpdpbusd against
// vpmaddubsw, the fifth bits by a byte mask against a compare;
// gguf_legacy_rows8.inc): the same int32 sums, so the same floats bit for bit.
TEST(CpuGgufGemvRows, Avx512EightRowKernelsAreTheAvx2OnesBitForBit) {
  if (!cpu::cpu_has(Isa::avx512)) GTEST_SKIP() << "this CPU lacks avx512: its interleaved K-quant kernels not compared";
  struct Case {
    uint32_t type;
    uint64_t block_bytes;
    std::function<std::vector<uint8_t>(const uint8_t*, uint64_t, int64_t, int64_t)> interleave;
    cpu::BlockRows8Kernel avx2, avx512;
  };
  auto legacy = [](uint32_t type) {
    return [type](const uint8_t* w, uint64_t row_bytes, int64_t rows, int64_t nb) {
      return cpu::interleave_legacy_rows8(type, w, row_bytes, rows, nb);
    };
  };
  for (const Case& c : {Case{gguf::kQ4_K, 144, cpu::interleave_q4_k_rows8, cpu::kAvx2Q4_KRows8i, cpu::kAvx512Q4_KRows8i},
                        Case{gguf::kQ6_K, 210, cpu::interleave_q6_k_rows8, cpu::kAvx2Q6_KRows8i, cpu::kAvx512Q6_KRows8i},
                        Case{gguf::kQ4_1, 20, legacy(gguf::kQ4_1), cpu::kAvx2Q4_1Rows8i, cpu::kAvx512Q4_1Rows8i},
                        Case{gguf::kQ5_0, 22, legacy(gguf::kQ5_0), cpu::kAvx2Q5_0Rows8i, cpu::kAvx512Q5_0Rows8i},
                        Case{gguf::kQ5_1, 24, legacy(gguf::kQ5_1), cpu::kAvx2Q5_1Rows8i, cpu::kAvx512Q5_1Rows8i}})
    for (int64_t nb : {1, 3, 6}) {
      const int64_t rows = 24, K = nb * gguf::type_info(c.type)->block_size;
      const uint64_t row_bytes = c.block_bytes * static_cast<uint64_t>(nb);
      const std::vector<uint8_t> w = random_rows(c.type, rows, nb);
      const std::vector<uint8_t> copy = c.interleave(w.data(), row_bytes, rows, nb);
      const Activation a = random_activation(K);
      std::vector<float> y2(static_cast<size_t>(rows)), y5(static_cast<size_t>(rows));
      c.avx2(w.data(), row_bytes, copy.data(), nullptr, 0, rows, a.row(), nb, y2.data(), nullptr);
      c.avx512(w.data(), row_bytes, copy.data(), nullptr, 0, rows, a.row(), nb, y5.data(), nullptr);
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_EQ(y5[r], y2[r]) << "type " << c.type << " blocks " << nb << " row " << r;
    }
}

}  // namespace
