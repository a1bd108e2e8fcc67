// qgemm.cpp: the prefill drivers of qgemm.hpp: which pieces of the weight
// each pool task takes (128-row pieces for SGEMM, 16-row panels for the
// integer kernels, W8A8's and the weight-only q8 one sharing the panel
// loop), the per-thread buffers they fill, and the kernels of the weight's
// qgemm table (qgemm_kernels.hpp).
#include "qgemm.hpp"

#include "grown_buffer.hpp"
#include "qgemm_kernels.hpp"
#include "qweight_codes.hpp"

#include <cblas.h>

#include <algorithm>
#include <vector>

namespace xquant::cpu {
namespace {

// Weight rows per dequantized piece: the block shape of sgemm_nt_blocked
// (dense_ops.cpp), so the SGEMM calls, and so the bits, are its own.
constexpr int64_t kSgemmBlockCols = 128;

// Buffers of one pool thread, grown on demand and reused: a prefill step
// allocates nothing once the largest shape has been seen.
struct PanelScratch {
  std::vector<float> tile, ps, acc;
  std::vector<uint8_t> panel;
};
PanelScratch& panel_scratch() {
  thread_local PanelScratch s;
  return s;
}

}  // namespace

void sgemm_dequantized_pieces(const Host& host, int64_t M, int64_t N, int64_t K, const float* x,
                              DequantPiece dequant, float* y) {
  const uint64_t pieces = static_cast<uint64_t>((N + kSgemmBlockCols - 1) / kSgemmBlockCols);
  host.parallel_for(pieces, 1, [&](uint64_t b, uint64_t e) {
    float* tile = grown(panel_scratch().tile, kSgemmBlockCols * K);
    for (uint64_t piece = b; piece < e; ++piece) {
      const int64_t n0 = static_cast<int64_t>(piece) * kSgemmBlockCols, nr = std::min(kSgemmBlockCols, N - n0);
      dequant(n0, nr, tile);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(nr),
                  static_cast<int>(K), 1.0f, x, static_cast<int>(K), tile, static_cast<int>(K), 0.0f, y + n0,
                  static_cast<int>(N));
    }
  });
}

void qgemm_dequant_sgemm(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y) {
  const int64_t G = w.n_groups;
  const QGemmKernels& k = *w.gemm_kernels;
  sgemm_dequantized_pieces(host, M, w.rows, w.padded_cols, x, [&](int64_t n0, int64_t nr, float* out) {
    thread_local std::vector<uint8_t> rows;
    k.dequant_rows(codes_of_rows(w, n0, nr, rows), w.row_bytes, w.int4, w.scales + n0 * G,
                   w.zeros ? w.zeros + n0 * G : nullptr, G, w.block_begin.data(), nr, out);
  }, y);
}

void for_each_panel(const Host& host, int64_t N, int64_t Kp, int64_t G, int64_t M, PanelPack pack,
                    PanelMultiply multiply, PanelFinish finish) {
  const uint64_t panels = static_cast<uint64_t>((N + kPanelRows - 1) / kPanelRows);
  host.parallel_for(panels, 1, [&](uint64_t b, uint64_t e) {
    PanelScratch& sc = panel_scratch();
    uint8_t* panel = grown(sc.panel, Kp * kPanelRows);
    float* ps = grown(sc.ps, G * kPanelRows);
    float* acc = grown(sc.acc, kPanelActRows * kPanelRows);
    for (uint64_t p = b; p < e; ++p) {
      const int64_t n0 = static_cast<int64_t>(p) * kPanelRows, nr = std::min(kPanelRows, N - n0);
      pack(n0, nr, panel, ps);
      for (int64_t m0 = 0; m0 < M; m0 += kPanelActRows) {
        const int64_t mt = std::min(kPanelActRows, M - m0);
        multiply(panel, ps, m0, mt, acc);
        finish(n0, nr, m0, mt, acc);
      }
    }
  });
}

namespace {

// A packed weight's panel: its rows from the row-major codes, or rebuilt
// from the eight-row decode copy when that is all it keeps
// (qweight_codes.hpp), in panel_i8's layout.
void pack_weight_panel(const xq_qweight& w, int64_t n0, int64_t nr, uint8_t* panel, float* ps) {
  thread_local std::vector<uint8_t> rows;
  const uint8_t* codes = codes_of_rows(w, n0, nr, rows);
  w.gemm_kernels->pack_panel_i8(codes, w.row_bytes, w.int4, w.scales + n0 * w.n_groups, w.n_groups, w.padded_cols, 0,
                                nr, panel, ps);
}

}  // namespace

void qgemm_w8a8_panels(const Host& host, const xq_qweight& w, const int8_t* qx, const int32_t* qsum, int64_t M,
                       PanelFinish finish) {
  const int64_t Kp = w.padded_cols, G = w.n_groups;
  const QGemmKernels& k = *w.gemm_kernels;
  auto pack = [&](int64_t n0, int64_t nr, uint8_t* panel, float* ps) { pack_weight_panel(w, n0, nr, panel, ps); };
  auto multiply = [&](const uint8_t* panel, const float* ps, int64_t m0, int64_t mt, float* acc) {
    k.panel_i8(panel, ps, qx + m0 * Kp, Kp, qsum + m0 * G, mt, w.block_begin.data(), G, !w.int4, acc);
  };
  for_each_panel(host, w.rows, Kp, G, M, pack, multiply, finish);
}

void qgemm_q8_panels(const Host& host, const xq_qweight& w, const int8_t* qx, const float* sa, const int32_t* bsum,
                     int64_t M, PanelFinish finish) {
  const int64_t Kp = w.padded_cols, G = w.n_groups, nblk = w.block_begin[G];
  const QGemmKernels& k = *w.gemm_kernels;
  auto pack = [&](int64_t n0, int64_t nr, uint8_t* panel, float* ps) { pack_weight_panel(w, n0, nr, panel, ps); };
  auto multiply = [&](const uint8_t* panel, const float* ps, int64_t m0, int64_t mt, float* acc) {
    k.panel_q8(panel, ps, nullptr, nullptr, qx + m0 * Kp, Kp, sa + m0 * nblk, nblk,
               w.int4 ? nullptr : bsum + m0 * nblk, 128, mt, w.block_begin.data(), G, !w.int4, acc);
  };
  for_each_panel(host, w.rows, Kp, G, M, pack, multiply, finish);
}

}  // namespace xquant::cpu
