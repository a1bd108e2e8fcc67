// gguf_blocks_panels.cpp: GGUF Q4_0 / Q8_0 / Q4_K prefill on the packed
// weights' panels (qgemm_kernels.hpp). A Q4_0 block (f16 d, 16 bytes: column
// c < 16 the low nibble of byte c, c >= 16 the high nibble of byte c - 16,
// value u - 8) holds its codes in the packed INT4 layout of qkernels.hpp, and
// a Q8_0 block (f16 d, 32 int8) in the packed INT8 one, so a panel is the
// blocks' code bytes copied out without their scales and packed by the
// table's pack_panel_i8, with one group per block (the block's own scale).
// A Q4_K super-block (ggml-common.h block_q4_K: f16 d and dmin, 12 bytes of
// 6-bit scales and mins, 128 bytes of nibbles; sub-block j = 2c + h of 32
// columns is nibble h of bytes 32c..32c+31) is one group per 32-column
// sub-block too, its nibbles moved into the packed INT4 order, its scale
// d * sc_j and its min dmin * m_j, which the kernel takes off as
// dmin * m_j * (sa_b * the sum of the block's activation codes): llama.cpp's
// ggml_vec_dot_q4_K_q8_K with the q8_0 activations of the other types (one
// scale per 32 columns instead of per 256). The integer block dots are
// exact; the float sums differ from the row kernels' only in order (and, for
// Q4_K, in the activation blocks). A Q6_K super-block (block_q6_K: ql[128],
// qh[64], int8 scales[16], f16 d; w = d * sc_j * (q - 32) per 16-column
// sub-block j) is eight 32-column INT8 blocks of its six-bit codes q, scale d,
// and two sub-block scales each, which the table's panel_q6k applies to the
// two halves' integer dots (qgemm_kernels.hpp).
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

// The packed INT4 bytes (16 per 32-column block) of Q4_K sub-block h of
// 64-column chunk `qs` (32 bytes): byte k holds column k (low nibble) and
// column k + 16 (high nibble).
void q4_k_subblock_codes(const uint8_t* qs, int h, uint8_t* out) {
  for (int k = 0; k < 16; ++k) {
    const int lo = (qs[k] >> (4 * h)) & 0x0F, hi = (qs[k + 16] >> (4 * h)) & 0x0F;
    out[k] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

// The six-bit codes q (0..63) of a block_q6_K super-block in column order,
// as ggml-quants.c's dequantize_row_q6_K reads them (dot_q6_k's order).
void q6_k_codes(const uint8_t* blk, uint8_t* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = blk + 64 * h;
    const uint8_t* qh = blk + 128 + 32 * h;
    uint8_t* out = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<uint8_t>((ql[l] & 0xF) | ((qh[l] & 3) << 4));
      out[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      out[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      out[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

// Stored bytes per 32-column block in a gathered row: INT8 codes (Q8_0, Q6_K)
// or packed nibbles.
int64_t gathered_code_bytes(uint32_t type) { return type == gguf::kQ8_0 || type == gguf::kQ6_K ? 32 : 16; }

// Rows [n0, n0 + nr) of the weight as packed rows: code bytes block after
// block (32 columns each), and each block's scale, (Q4_K) min and (Q6_K) two
// 16-column sub-block scales. Q6_K's codes are stored as the signed bytes q -
// 128, which the INT8 panel packing turns back into the unsigned q.
void gather_block_rows(const BlockWeight& w, uint32_t type, int64_t n0, int64_t nr, uint8_t* codes, float* scales,
                       float* mins, int32_t* sub_scales) {
  const int64_t nblk = w.cols / 32, code_bytes = gathered_code_bytes(type);
  thread_local std::vector<uint8_t> rebuilt;
  uint8_t* scratch = grown(rebuilt, static_cast<int64_t>(w.max_row_bytes));
  for (int64_t i = 0; i < nr; ++i) {
    const BlockPart& p = w.part_of(n0 + i);
    const uint8_t* row = part_row(p, n0 + i - p.row0, scratch);
    uint8_t* c = codes + i * nblk * code_bytes;
    if (type == gguf::kQ4_K) {
      for (int64_t sb = 0; sb < nblk / 8; ++sb) {
        const uint8_t* blk = row + sb * 144;
        uint16_t dh, mh;
        std::memcpy(&dh, blk, 2);
        std::memcpy(&mh, blk + 2, 2);
        const float d = sdk::f16_to_f32(dh), dmin = sdk::f16_to_f32(mh);
        for (int j = 0; j < 8; ++j) {
          uint8_t sc, mn;
          gguf::k_scale_min(j, blk + 4, &sc, &mn);
          const int64_t b = sb * 8 + j;
          scales[i * nblk + b] = d * static_cast<float>(sc);
          mins[i * nblk + b] = dmin * static_cast<float>(mn);
          q4_k_subblock_codes(blk + 16 + 32 * (j / 2), j % 2, c + b * 16);
        }
      }
      continue;
    }
    if (type == gguf::kQ6_K) {
      for (int64_t sb = 0; sb < nblk / 8; ++sb) {
        const uint8_t* blk = row + sb * 210;
        uint16_t dh;
        std::memcpy(&dh, blk + 208, 2);
        const float d = sdk::f16_to_f32(dh);
        uint8_t* cq = c + sb * 256;
        q6_k_codes(blk, cq);
        for (int k = 0; k < 256; ++k) cq[k] ^= 0x80;
        for (int j = 0; j < 16; ++j) sub_scales[i * 2 * nblk + sb * 16 + j] = static_cast<int8_t>(blk[192 + j]);
        for (int b = 0; b < 8; ++b) scales[i * nblk + sb * 8 + b] = d;
      }
      continue;
    }
    const int64_t block_bytes = code_bytes + 2;
    for (int64_t b = 0; b < nblk; ++b) {
      uint16_t d;
      std::memcpy(&d, row + b * block_bytes, 2);
      scales[i * nblk + b] = sdk::f16_to_f32(d);
      std::memcpy(c + b * code_bytes, row + b * block_bytes + 2, static_cast<size_t>(code_bytes));
    }
  }
}

}  // namespace

const QGemmKernels* blocks_prefill_panels(const BlockWeight& w, PrefillMode mode, Isa isa) {
  const QGemmKernels& k = qgemm_kernels_of(isa);
  if (!k.panel_q8 || w.parts.empty() || w.cols % 32) return nullptr;
  if (mode == PrefillMode::sgemm) return nullptr;
  const uint32_t type = w.parts.front().type;
  // auto: Q4_0 and Q4_K where the table takes INT4 panels by default, Q6_K
  // where it has panel_q6k and q6k_panels_by_default (measured faster than
  // SGEMM). Q8_0 blocks are also what the engine makes of a quantized model's
  // embedding / lm_head tables (engine/compact_tables.cpp), and int8
  // activations on top of that requantized lm_head moved stories260K
  // perplexity beyond 0.5% of llama.cpp's on the same files
  // (tests/interop/llamacpp_interop.py: Q4_1 file 0.55%, Q6_K file 0.99%):
  // only XQUANT_CPU_PREFILL=int8 takes Q8_0 weights.
  const bool int4_type = type == gguf::kQ4_0 || type == gguf::kQ4_K;
  if (type == gguf::kQ6_K) {
    if (!k.panel_q6k || w.cols % 256 || (mode == PrefillMode::automatic && !k.q6k_panels_by_default)) return nullptr;
  } else {
    if (mode == PrefillMode::automatic && !(int4_type && k.q8_panels_by_default_int4)) return nullptr;
    if (!int4_type && type != gguf::kQ8_0) return nullptr;
    if (type == gguf::kQ4_K && w.cols % 256) return nullptr;
  }
  for (const BlockPart& p : w.parts)
    if (p.type != type) return nullptr;
  return &k;
}

void qmatmul_blocks_panels(const sdk::Host& host, const BlockWeight& w, const QGemmKernels& k, const int8_t* q,
                           const float* d32, const int16_t* sum32, int64_t M, float* y, const float* bias) {
  const uint32_t type = w.parts.front().type;
  const bool k_quant = type == gguf::kQ4_K, q6_k = type == gguf::kQ6_K;
  const bool int8 = type == gguf::kQ8_0 || q6_k;  // INT8 panels
  const int64_t N = w.rows, K = w.cols, nblk = K / 32, code_bytes = gathered_code_bytes(type);
  thread_local std::vector<int64_t> bb_buf;
  thread_local std::vector<int32_t> bsum_buf;
  int64_t* bb = grown(bb_buf, nblk + 1);
  std::iota(bb, bb + nblk + 1, int64_t{0});  // one group per block
  // panel_q8's block code sums (panel_q6k takes the half-block ones below).
  int32_t* bsum = q6_k ? nullptr : grown(bsum_buf, M * nblk);
  for (int64_t i = 0; bsum && i < M * nblk; ++i) bsum[i] = sum32[i];
  // Q4_K: each activation block's d32 * (sum of its codes), the factor of
  // the sub-block mins, once per call rather than per panel.
  thread_local std::vector<float> am_buf;
  float* am = k_quant ? grown(am_buf, M * nblk) : nullptr;
  for (int64_t i = 0; am && i < M * nblk; ++i) am[i] = d32[i] * static_cast<float>(bsum[i]);
  // Q6_K: each activation row's code sums per 16-column half block.
  thread_local std::vector<int32_t> sum16_buf;
  int32_t* sum16 = q6_k ? grown(sum16_buf, M * 2 * nblk) : nullptr;
  for (int64_t i = 0; sum16 && i < M * 2 * nblk; ++i) {
    int32_t t = 0;
    for (int64_t p = 16 * i; p < 16 * (i + 1); ++p) t += q[p];  // row j's halves follow its K codes
    sum16[i] = t;
  }
  // Per pool thread: the panel's mins in ps's layout (Q4_K) or its sub-block
  // scales (Q6_K), beside the panel for_each_panel hands the kernel.
  thread_local std::vector<float> pm_buf;
  thread_local std::vector<int32_t> psc_buf;
  auto pack = [&](int64_t n0, int64_t nr, uint8_t* panel, float* ps) {
    thread_local std::vector<uint8_t> codes;
    thread_local std::vector<float> scales, mins;
    uint8_t* c = grown(codes, kPanelRows * nblk * code_bytes);
    float* s = grown(scales, kPanelRows * nblk);
    float* mn = k_quant ? grown(mins, kPanelRows * nblk) : nullptr;
    thread_local std::vector<int32_t> subs;
    int32_t* sub = q6_k ? grown(subs, kPanelRows * 2 * nblk) : nullptr;
    gather_block_rows(w, type, n0, nr, c, s, mn, sub);
    k.pack_panel_i8(c, nblk * code_bytes, !int8, s, nblk, K, 0, nr, panel, ps);
    if (q6_k) {
      int32_t* psc = grown(psc_buf, 2 * nblk * kPanelRows);
      for (int64_t h = 0; h < 2 * nblk; ++h)
        for (int64_t i = 0; i < kPanelRows; ++i) psc[h * kPanelRows + i] = i < nr ? sub[i * 2 * nblk + h] : 0;
    }
    if (!k_quant) return;
    float* pm = grown(pm_buf, nblk * kPanelRows);
    for (int64_t b = 0; b < nblk; ++b)
      for (int64_t i = 0; i < kPanelRows; ++i) pm[b * kPanelRows + i] = i < nr ? mn[i * nblk + b] : 0.0f;
  };
  // Q4_0's panels hold u = code + 8, Q8_0's code + 128: the kernel takes the
  // offset times the block's activation sum off each exact block dot. Q4_K's
  // hold its unsigned codes (w = scale * u - min): no offset, the mins.
  // Q6_K's hold q = code + 32, which panel_q6k takes off per half block.
  const int32_t offset = k_quant ? 0 : int8 ? 128 : 8;
  auto multiply = [&](const uint8_t* panel, const float* ps, int64_t m0, int64_t mt, float* acc) {
    if (q6_k)
      return k.panel_q6k(panel, ps, psc_buf.data(), q + m0 * K, K, d32 + m0 * nblk, nblk, sum16 + m0 * 2 * nblk, mt,
                         nblk, acc);
    k.panel_q8(panel, ps, k_quant ? pm_buf.data() : nullptr, am ? am + m0 * nblk : nullptr, q + m0 * K, K,
               d32 + m0 * nblk, nblk, bsum + m0 * nblk, offset, mt, bb, nblk, int8, acc);
  };
  auto finish = [&](int64_t n0, int64_t nr, int64_t m0, int64_t mt, const float* acc) {
    for (int64_t j = 0; j < mt; ++j)
      for (int64_t i = 0; i < nr; ++i)
        y[(m0 + j) * N + n0 + i] = acc[j * kPanelRows + i] + (bias ? bias[n0 + i] : 0.0f);
  };
  for_each_panel(host, N, K, nblk, M, pack, multiply, finish);
}

}  // namespace xquant::cpu
