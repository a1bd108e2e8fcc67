// gguf_blocks_weight.hpp: a `cpu` provider weight made of foreign (ggml)
// blocks, the rows of one or more borrowed parts stacked (gguf_blocks.cpp).
#pragma once

#include "gguf_blocks.hpp"
#include "gguf_dequant.hpp"
#include "gguf_gemv_rows.hpp"
#include "qgemm_kernels.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/xq_kernel.h>

#include <cstdint>
#include <vector>

namespace xquant::cpu {

struct BlockPart {
  uint32_t type = 0;            // ggml type id
  int64_t row0 = 0, rows = 0;   // rows [row0, row0 + rows) of the stacked weight
  uint64_t row_bytes = 0;
  int64_t blocks_per_row = 0;
  const uint8_t* data = nullptr;  // borrowed (xq_block_tensor)
  float (*kernel)(const uint8_t*, const QuantizedRow&, int64_t) = nullptr;  // the type's integer kernel
  BlockRowsKernel rows_kernel = nullptr;  // its row-range decode kernel, if any (gguf_gemv_rows.hpp)
  GgufDequantBlocks dequant = nullptr;    // its vector decoder (gguf_dequant.hpp), or null: the loader's scalar one
  // Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K (AVX2, AVX-512), Q8_0 (AVX-512)
  // with XQUANT_CPU_GEMV_ROWS8=interleaved (the default): decode's copy of
  // the whole groups of eight rows (qgemv_rows8.hpp) and the kernel that reads it.
  BlockRows8Kernel rows8_kernel = nullptr;
  std::vector<uint8_t> codes8;    // Q4_0, Q8_0: the codes; the others: the whole interleaved blocks
  std::vector<uint16_t> scales8;  // Q4_0, Q8_0: f16 d, as stored; the others: empty
  // With a copy, the copy serves every reader of the rows in whole groups of
  // eight (gguf_blocks.cpp part_row) and `tail` holds the rows after them,
  // copied, so the caller's bytes (`data`, then null) are not read after
  // prepare; their pages are released.
  std::vector<uint8_t> tail;
  bool rows_from_copy() const { return rows8_kernel != nullptr; }
};

// The stored bytes of part row `r` (gguf_blocks.cpp): in place, or rebuilt
// into `out` (row_bytes of room) from the interleaved copy that replaced them.
const uint8_t* part_row(const BlockPart& p, int64_t r, uint8_t* out);

struct BlockWeight {
  std::vector<BlockPart> parts;
  int64_t rows = 0, cols = 0;
  bool k_quants = false;  // some part runs a K-quant kernel (needs the 256-column activation blocks)
  uint64_t bytes = 0;
  uint64_t max_row_bytes = 0;  // the longest part row (scratch for rows rebuilt from a copy)
  // Q4_0-, Q8_0-, Q4_K- or Q6_K-only weights: the table whose panels run
  // prefill (gguf_blocks_panels.hpp), or null.
  const QGemmKernels* panels = nullptr;
  const char* kernels_name = "";
  const char* layout = "";
  const BlockPart& part_of(int64_t row) const;
};

xq_qweight* prepare_blocks(const xq_block_tensor* parts, uint32_t n);
// Whether some part still reads the caller's bytes (xq_kernel_vtable.qweight_borrows).
bool blocks_borrow(const BlockWeight& w);
void run_blocks_qmatmul(const sdk::Host& host, const xq_op& op);
void run_blocks_dequantize(const sdk::Host& host, const xq_op& op);
void check_blocks_get_rows(const xq_op& op);
void run_blocks_get_rows(const sdk::Host& host, const xq_op& op);

}  // namespace xquant::cpu
