// compact_tables.hpp: the forms the engine can hold the embedding table and
// lm_head in on a host provider (compact_tables.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace xquant {

class Checkpoint;

enum class TableForm {
  kAuto,      // q8_0 for a quantized checkpoint, as-stored otherwise (default_table_form)
  kAsStored,  // BF16 stays BF16, F32 on the BF16 grid held BF16, other F32/F16 held in F32 (exact)
  kBf16,      // F32/F16 rounded to BF16
  kQ8_0,      // every float table as ggml Q8_0 blocks
};

// "auto", "as-stored", "bf16", "q8_0" (any case); throws naming the value otherwise.
TableForm table_form_from_name(const std::string& name);

// What kAuto means for `cp`: kQ8_0 when it is a quantized checkpoint (a
// quantization format recognises it, or a tensor is stored quantized: GGUF
// blocks, the xq container),
// as llama.cpp's quantizer stores the output matrix as Q8_0 or Q6_K beside
// quantized layers; kAsStored (exact) for a float checkpoint.
TableForm default_table_form(const Checkpoint& cp);

// rows x cols floats (cols a multiple of 32) into ggml Q8_0 blocks, rows
// after rows (cols / 32 * 34 bytes each): ggml's quantize_row_q8_0_ref.
void encode_q8_0_rows(const float* x, int64_t rows, int64_t cols, uint8_t* out);

}  // namespace xquant
