// qweight_codes.hpp: the row-major packed codes (cpu.int-blocks.v1 rows,
// qkernels.hpp) of a prepared weight, for every reader other than the
// eight-row decode GEMV, whether the weight still holds them or holds only
// the interleaved decode copy (qgemv_rows8.hpp interleave_rows8) plus a
// row-major remainder of the rows outside whole groups of eight.
//
// Why: keeping both copies held an INT4 weight twice (llama.cpp keeps only
// its repacked block_q4_0x8 copy, ggml-cpu/repack.cpp). Rows are rebuilt on
// demand into the caller's buffer: the interleaved copy is a permutation of
// 4-byte words, so rebuilding is exact and costs one pass over the row.
#pragma once

#include "cpu.hpp"

#include <vector>

namespace xquant::cpu {

// Rows [n0, n0 + nr) of w's codes, row_bytes apart: w.codes itself when the
// weight holds its row-major codes, else rebuilt into buf (grown as needed).
const uint8_t* codes_of_rows(const xq_qweight& w, int64_t n0, int64_t nr, std::vector<uint8_t>& buf);

// Drops w's row-major codes once its interleaved copy exists, keeping the
// rows outside whole groups of eight in w.codes_tail; only for codes packed
// here (w.owned), never for a container's stored bytes (adopted weights keep
// reading the file's pages in place, which the kernel may evict).
void release_row_major_codes(xq_qweight& w);

}  // namespace xquant::cpu
