// gguf_blocks_panels.cpp: GGUF Q4_0 / Q8_0 prefill on the packed weights'
// panels (qgemm_kernels.hpp). A Q4_0 block (f16 d, 16 bytes: column c < 16 the low nibble
// of byte c, c >= 16 the high nibble of byte c - 16, value u - 8) holds its
// codes in the packed INT4 layout of qkernels.hpp, and a Q8_0 block (f16 d,
// 32 int8) in the packed INT8 one, so a panel is the blocks' code bytes
// copied out without their scales and packed by the table's pack_panel_i8,
// with one group per block (the block's own scale). The integer block dots
// are exact; the float sums differ from the row kernels' only in order.
#include "gguf_blocks_panels.hpp"

#include "gguf_types.hpp"
#include "grown_buffer.hpp"
#include "qgemm.hpp"

#include <xquant/sdk/half.hpp>

#include <cstring>
#include <numeric>
#include <vector>

namespace xquant::cpu {
namespace {

// Rows [n0, n0 + nr) of the weight as packed rows: code bytes block after
// block, and their blocks' scales.
void gather_block_rows(const BlockWeight& w, bool int4, int64_t n0, int64_t nr, uint8_t* codes, float* scales) {
  const int64_t nblk = w.cols / 32, code_bytes = int4 ? 16 : 32, block_bytes = code_bytes + 2;
  for (int64_t i = 0; i < nr; ++i) {
    const BlockPart& p = w.part_of(n0 + i);
    const uint8_t* row = p.data + static_cast<uint64_t>(n0 + i - p.row0) * p.row_bytes;
    for (int64_t b = 0; b < nblk; ++b) {
      uint16_t d;
      std::memcpy(&d, row + b * block_bytes, 2);
      scales[i * nblk + b] = sdk::f16_to_f32(d);
      std::memcpy(codes + (i * nblk + b) * code_bytes, row + b * block_bytes + 2, static_cast<size_t>(code_bytes));
    }
  }
}

}  // namespace

const QGemmKernels* blocks_prefill_panels(const BlockWeight& w, PrefillMode mode, Isa isa) {
  const QGemmKernels& k = qgemm_kernels_of(isa);
  if (!k.panel_q8 || w.parts.empty() || w.cols % 32) return nullptr;
  if (mode == PrefillMode::sgemm) return nullptr;
  const uint32_t type = w.parts.front().type;
  // auto: Q4_0 only, where the table takes INT4 panels by default. Q8_0 blocks are also what the engine makes of a
  // quantized model's embedding / lm_head tables (engine/compact_tables.cpp),
  // and int8 activations on top of that requantized lm_head moved stories260K
  // perplexity beyond 0.5% of llama.cpp's on the same files
  // (tests/interop/llamacpp_interop.py: Q4_1 file 0.55%, Q6_K file 0.99%);
  // XQUANT_CPU_PREFILL=int8 takes Q8_0 weights too.
  if (mode == PrefillMode::automatic && !(type == gguf::kQ4_0 && k.q8_panels_by_default_int4)) return nullptr;
  if (type != gguf::kQ4_0 && type != gguf::kQ8_0) return nullptr;
  for (const BlockPart& p : w.parts)
    if (p.type != type) return nullptr;
  return &k;
}

void qmatmul_blocks_panels(const sdk::Host& host, const BlockWeight& w, const QGemmKernels& k, const int8_t* q,
                           const float* d32, const int16_t* sum32, int64_t M, float* y, const float* bias) {
  const bool int4 = w.parts.front().type == gguf::kQ4_0;
  const int64_t N = w.rows, K = w.cols, nblk = K / 32, code_bytes = int4 ? 16 : 32;
  thread_local std::vector<int64_t> bb_buf;
  thread_local std::vector<int32_t> bsum_buf;
  int64_t* bb = grown(bb_buf, nblk + 1);
  std::iota(bb, bb + nblk + 1, int64_t{0});  // one group per block
  int32_t* bsum = grown(bsum_buf, M * nblk);
  for (int64_t i = 0; i < M * nblk; ++i) bsum[i] = sum32[i];
  auto pack = [&](int64_t n0, int64_t nr, uint8_t* panel, float* ps) {
    thread_local std::vector<uint8_t> codes;
    thread_local std::vector<float> scales;
    uint8_t* c = grown(codes, kPanelRows * nblk * code_bytes);
    float* s = grown(scales, kPanelRows * nblk);
    gather_block_rows(w, int4, n0, nr, c, s);
    k.pack_panel_i8(c, nblk * code_bytes, int4, s, nblk, K, 0, nr, panel, ps);
  };
  // Q4_0's panels hold u = code + 8, Q8_0's code + 128: the kernel takes the
  // offset times the block's activation sum off each exact block dot.
  const int32_t offset = int4 ? 8 : 128;
  auto multiply = [&](const uint8_t* panel, const float* ps, int64_t m0, int64_t mt, float* acc) {
    k.panel_q8(panel, ps, q + m0 * K, K, d32 + m0 * nblk, nblk, bsum + m0 * nblk, offset, mt, bb, nblk, !int4, acc);
  };
  auto finish = [&](int64_t n0, int64_t nr, int64_t m0, int64_t mt, const float* acc) {
    for (int64_t j = 0; j < mt; ++j)
      for (int64_t i = 0; i < nr; ++i)
        y[(m0 + j) * N + n0 + i] = acc[j * kPanelRows + i] + (bias ? bias[n0 + i] : 0.0f);
  };
  for_each_panel(host, N, K, nblk, M, pack, multiply, finish);
}

}  // namespace xquant::cpu
