// test_cpu_gguf_dequant.cpp: the vector GGUF block decoders of the `cpu`
// provider's prefill (gguf_dequant.hpp), each ISA's table against the
// loader's scalar decoder (plugins/gguf/gguf_types.cpp, compiled in), bit for
// bit, on fresh random blocks of every type it covers: every byte random
// except the f16 scales and mins, which are random finite halves of either
// sign (normal, subnormal, zero; a NaN scale gives NaN either way but its
// payload may differ), 1 to 9 blocks per row (odd counts, so no decoder
// relies on pairs of blocks), written at an unaligned address, nothing
// written past the row. ggml rows are whole blocks (a K-quant row is a
// multiple of 256 columns), so there is no partial last block to test.
// A path the CPU lacks is skipped with a message naming it.
#include "../support/test_seed.hpp"
#include "gguf_dequant.hpp"
#include "gguf_types.hpp"
#include "qkernels.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace xquant;
using xquant::cpu::Isa;

namespace {

// Fresh inputs every run; the seed is printed so a failure can be replayed.
std::mt19937 rng(test::seed_from_env_or_fresh("test_cpu_gguf_dequant"));

// A random half that is not NaN or infinite: exponent field 0..30.
void put_finite_f16(uint8_t* p) {
  const uint16_t sign = static_cast<uint16_t>(std::uniform_int_distribution<int>(0, 1)(rng) << 15);
  const uint16_t exp = static_cast<uint16_t>(std::uniform_int_distribution<int>(0, 30)(rng) << 10);
  const uint16_t mant = static_cast<uint16_t>(std::uniform_int_distribution<int>(0, 1023)(rng));
  const uint16_t h = sign | exp | mant;
  std::memcpy(p, &h, 2);
}

// Byte offsets of each block's f16 fields (ggml-common.h block_* structs).
std::vector<int> f16_fields(uint32_t type) {
  switch (type) {
    case gguf::kQ4_0: case gguf::kQ5_0: case gguf::kQ8_0: return {0};
    case gguf::kQ4_1: case gguf::kQ5_1: case gguf::kQ4_K: case gguf::kQ5_K: return {0, 2};
    case gguf::kQ6_K: return {208};
  }
  return {};
}

std::vector<uint8_t> random_row(uint32_t type, int64_t nb) {
  const gguf::TypeInfo* ti = gguf::type_info(type);
  std::vector<uint8_t> row(static_cast<size_t>(nb) * ti->type_size);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < nb; ++b)
    for (int off : f16_fields(type)) put_finite_f16(row.data() + b * ti->type_size + off);
  return row;
}

const uint32_t kTypes[] = {gguf::kQ4_0, gguf::kQ4_1, gguf::kQ5_0, gguf::kQ5_1,
                           gguf::kQ8_0, gguf::kQ4_K, gguf::kQ5_K, gguf::kQ6_K};

void check_table(Isa isa) {
  const cpu::GgufDequantKernels* t = cpu::gguf_dequant_kernels_of(isa);
  ASSERT_NE(t, nullptr) << cpu::isa_name(isa);
  EXPECT_STREQ(t->name, cpu::isa_name(isa));
  for (uint32_t type : kTypes) {
    const gguf::TypeInfo* ti = gguf::type_info(type);
    const cpu::GgufDequantBlocks dq = cpu::gguf_dequant_blocks(*t, type);
    ASSERT_NE(dq, nullptr) << ti->name;
    for (int64_t nb = 1; nb <= 9; nb += (ti->block_size == 256 ? 2 : 1)) {
      for (int rep = 0; rep < 8; ++rep) {
        const std::vector<uint8_t> row = random_row(type, nb);
        const int64_t n = nb * ti->block_size;
        std::vector<float> want(static_cast<size_t>(n));
        ASSERT_TRUE(gguf::dequantize_row(type, row.data(), want.data(), n));
        // One float of slack in front (unaligned start) and a guard behind.
        constexpr float kGuard = -12345.0f;
        std::vector<float> got(static_cast<size_t>(n) + 5, kGuard);
        dq(row.data(), got.data() + 1, nb);
        const std::string where = std::string(cpu::isa_name(isa)) + " " + ti->name + ", " + std::to_string(nb) + " blocks";
        ASSERT_EQ(0, std::memcmp(got.data() + 1, want.data(), want.size() * sizeof(float))) << where;
        ASSERT_EQ(got[0], kGuard) << where << ": wrote before the row";
        for (size_t i = static_cast<size_t>(n) + 1; i < got.size(); ++i) ASSERT_EQ(got[i], kGuard) << where << ": wrote past the row";
      }
    }
  }
  // Types the loader decodes but the block path does not run have no decoder.
  for (uint32_t type : {gguf::kF32, gguf::kF16, gguf::kBF16, gguf::kQ8_1, gguf::kQ2_K})
    EXPECT_EQ(cpu::gguf_dequant_blocks(*t, type), nullptr) << type;
}

#define SKIP_UNLESS_CPU_HAS(isa) \
  if (!cpu::cpu_has(isa)) GTEST_SKIP() << "this CPU lacks " << cpu::isa_name(isa) << ": its GGUF decoders not tested"

}  // namespace

TEST(GgufDequant, ScalarHasNoTableAndTakesTheLoadersDecoder) {
  EXPECT_EQ(cpu::gguf_dequant_kernels_of(Isa::scalar), nullptr);
}
TEST(GgufDequant, Avx2IsTheScalarDecoderBitForBit) {
  SKIP_UNLESS_CPU_HAS(Isa::avx2);
  check_table(Isa::avx2);
}
TEST(GgufDequant, Avx512IsTheScalarDecoderBitForBit) {
  SKIP_UNLESS_CPU_HAS(Isa::avx512);
  check_table(Isa::avx512);
}
