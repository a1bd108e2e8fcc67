// gguf_types.hpp: the ggml tensor types a GGUF file may name, with their
// block geometry, and the row decoders (dequantizers) for the ones xquant
// reads (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
//
// Kept free of the plugin machinery (only the SDK's half.hpp) so the tests
// can compile this file directly and check every decoder against
// independent encoders / hand-built blocks (tests/gguf/).
#pragma once

#include <cstddef>
#include <cstdint>

namespace xquant::gguf {

struct TypeInfo {
  uint32_t id;
  const char* name;      // ggml spelling: "F32", "Q4_K", ...
  uint32_t block_size;   // elements per block (1 for plain types)
  uint32_t type_size;    // bytes per block
  bool decodable;        // dequantize_row() handles it
};

// nullptr for ids ggml does not define (or removed ids 4, 5, 31-33).
const TypeInfo* type_info(uint32_t id);

enum : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15, kBF16 = 30
};

// Decodes `n` elements (a multiple of the type's block size) starting at
// `src` into `dst`. Returns false for a type that is not decodable.
bool dequantize_row(uint32_t type, const uint8_t* src, float* dst, int64_t n);

// The 6-bit (scale, min) pair of sub-block j (0..7) from the 12 packed bytes
// of a Q4_K / Q5_K super-block (ggml's get_scale_min_k4).
void k_scale_min(int j, const uint8_t* scales12, uint8_t* sc, uint8_t* mn);

}  // namespace xquant::gguf
