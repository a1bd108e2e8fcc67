// compact_tables.hpp: the forms the engine can hold the embedding table and
// lm_head in on a host provider (compact_tables.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace xquant {

enum class TableForm {
  kAsStored,  // BF16 stays BF16, F32/F16 held in F32 (exact)
  kBf16,      // F32/F16 rounded to BF16
  kQ8_0,      // every float table as ggml Q8_0 blocks
};

// "as-stored", "bf16", "q8_0" (any case); throws naming the value otherwise.
TableForm table_form_from_name(const std::string& name);

// rows x cols floats (cols a multiple of 32) into ggml Q8_0 blocks, rows
// after rows (cols / 32 * 34 bytes each): ggml's quantize_row_q8_0_ref.
void encode_q8_0_rows(const float* x, int64_t rows, int64_t cols, uint8_t* out);

}  // namespace xquant
