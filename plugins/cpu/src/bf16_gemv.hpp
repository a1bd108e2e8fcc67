// bf16_gemv.hpp: the decode GEMV on BF16 weights (a 16-bit-stored embedding
// table used as the tied lm_head, an untied BF16 lm_head), row by row with
// the weights widened in registers instead of through a buffer.
//
// Paths, chosen at run time from the CPU's features (XQUANT_CPU_BF16_GEMV
// overrides, for tests and benchmarks):
//   scalar, avx2, avx512  exact: each row's sum is bit-identical to dot_f32
//                         (dense_ops.cpp) on the F32 copy of the row: BF16 ->
//                         F32 is exact and the lanes, the mul-then-add per
//                         lane and the final reduction follow dot_f32's order,
//                         so a BF16 table gives the logits an F32 one gives.
//   avx512bf16            vdpbf16ps (AVX512_BF16): the activation row rounded
//                         to BF16 once per call (nearest even), products of
//                         BF16 pairs summed in F32 (Intel SDM, VDPBF16PS). Not
//                         exact: each product carries the activation's BF16
//                         rounding (2^-9 relative), so it is opt-in only.
#pragma once

#include <cstdint>

namespace xquant::cpu {

enum class Bf16GemvPath { scalar, avx2, avx512, avx512bf16 };

const char* bf16_gemv_path_name(Bf16GemvPath p);
bool cpu_has_bf16_gemv_path(Bf16GemvPath p);

// The exact path the CPU's features allow (avx512, else avx2, else scalar),
// or XQUANT_CPU_BF16_GEMV=scalar|avx2|avx512|avx512bf16; throws naming the
// value when it is unknown or the CPU lacks it.
Bf16GemvPath selected_bf16_gemv_path();

// out[r - r0] = sum_i bf16(w[r * k + i]) * x[i] for rows r0 <= r < r1.
// xb: x rounded to BF16 (bf16_round_activation), read only by avx512bf16.
void bf16_gemv_rows(Bf16GemvPath p, const uint16_t* w, const float* x, const uint16_t* xb, int64_t k, int64_t r0,
                    int64_t r1, float* out);

// x[0..k) to BF16, round to nearest even (the activation avx512bf16 reads).
void bf16_round_activation(const float* x, int64_t k, uint16_t* xb);

}  // namespace xquant::cpu
