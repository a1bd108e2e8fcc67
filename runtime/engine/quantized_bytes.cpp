// quantized_bytes.cpp: what a forward pass reads of a prepared quantized
// weight, as the provider stores it (Model::quantized_bytes), for
// weight_bytes_per_token, the load statistics and the benchmarks' floors.
#include "engine/model.hpp"

#include <xquant/sdk/cpu_layout.hpp>
#include <xquant/sdk/fp8.hpp>

#include <algorithm>

namespace xquant {

// Device providers (the `cuda` W4 and W8 layouts): the packed bits, plus one
// scale (and zero point) per group.
// Host memory (the `cpu` provider):
//   - integer codes, layout cpu.int-blocks.v1 (sdk/cpu_layout.hpp): each
//     group padded with zero codes to whole 32-column blocks, two codes per
//     byte at 4 bits or fewer and one byte otherwise, plus f32 scales (and
//     zero points) per row and group. Act-order groups (g_idx) are counted
//     as equal groups of group_size columns, which they are in the files
//     GPTQ writes;
//   - FP8 codes (plugins/cpu/src/fp8_qweight.cpp): each code's value held as
//     an f32 (the SGEMM operand), plus one f32 scale per row.
uint64_t Model::quantized_bytes(const xq_quant_tensor& q) const {
  const uint64_t rows = static_cast<uint64_t>(q.rows), cols = static_cast<uint64_t>(q.cols);
  const uint64_t scale_sets = q.symmetric ? 1 : 2;
  if (on_device()) {
    const uint64_t ns = q.strategy == XQ_STRATEGY_TENSOR ? 1 : rows * static_cast<uint64_t>(q.n_groups);
    return (rows * cols * XQ_CODE_WIDTH(q.bits) + 7) / 8 + ns * 4 * scale_sets;
  }
  if (sdk::is_float_code(q.bits)) return rows * cols * 4 + rows * 4;
  const bool grouped = q.strategy == XQ_STRATEGY_GROUP && q.group_size > 0;
  const uint64_t group = grouped ? static_cast<uint64_t>(q.group_size) : cols;
  const uint64_t block = static_cast<uint64_t>(sdk::cpu_layout::kBlock);
  uint64_t padded_cols = 0, groups = 0;
  for (uint64_t c0 = 0; c0 < cols; c0 += group, ++groups) padded_cols += (std::min(group, cols - c0) + block - 1) / block * block;
  const uint64_t row_bytes = q.bits <= 4 ? padded_cols / 2 : padded_cols;
  return rows * row_bytes + rows * groups * 4 * scale_sets;
}

}  // namespace xquant
