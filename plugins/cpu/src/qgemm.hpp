// qgemm.hpp: the `cpu` provider's prefill GEMMs on packed quantized weights
// (many activation rows), driven over the host pool in fixed-shape pieces, so
// results do not depend on the thread count (qgemm.cpp).
#pragma once

#include "cpu.hpp"

#include <cstdint>
#include <memory>
#include <type_traits>

namespace xquant::cpu {

// A non-owning reference to a callable, valid for the call it is passed to:
// unlike std::function it never allocates (a prefill call allocates nothing
// once its buffers have grown).
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor): passed as a lambda
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(a...); }) {}
  R operator()(A... a) const { return call_(obj_, a...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// y[M, N] = x[M, K] . W^T for a weight known only by how to dequantize its
// rows: each piece of 128 weight rows (the block shape of sgemm_nt_blocked,
// so the SGEMM calls, and so the bits, are those of dequantizing the whole
// weight and calling it) is written by dequant(n0, nr, out[nr, K]) into a
// buffer of the pool thread that runs the piece and multiplied at once by
// one single-threaded OpenBLAS SGEMM while it is still in cache. No bias.
using DequantPiece = FunctionRef<void(int64_t n0, int64_t nr, float* out)>;
void sgemm_dequantized_pieces(const Host& host, int64_t M, int64_t N, int64_t K, const float* x,
                              DequantPiece dequant, float* y);

// Weight-only prefill of packed weights: sgemm_dequantized_pieces with the
// table's dequant_rows, x in the weight's padded column order.
void qgemm_dequant_sgemm(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y);

// The integer prefills' loop: the N weight rows in panels of kPanelRows,
// each pool task packing a panel once with pack(n0, nr, panel[Kp *
// kPanelRows], ps[G * kPanelRows]) (panel_i8's layout) and running all M
// activation rows against it, kPanelActRows at a time, through
// multiply(panel, ps, m0, mt, acc), then finish(n0, nr, m0, mt, acc).
using PanelPack = FunctionRef<void(int64_t n0, int64_t nr, uint8_t* panel, float* ps)>;
using PanelMultiply = FunctionRef<void(const uint8_t* panel, const float* ps, int64_t m0, int64_t mt, float* acc)>;
using PanelFinish = FunctionRef<void(int64_t n0, int64_t nr, int64_t m0, int64_t mt, const float* acc)>;
void for_each_panel(const Host& host, int64_t N, int64_t Kp, int64_t G, int64_t M, PanelPack pack,
                    PanelMultiply multiply, PanelFinish finish);

// W8A8 prefill through the table's panel_i8 (the caller checks it is not
// null): qx [M, Kp] int8 activations, qsum [M, G] their per-group sums.
// Calls finish(n0, nr, m0, mt, acc) for each piece of nr weight rows x mt
// activation rows, acc[j * kPanelRows + i] being what dot*_i8 returns for
// weight row n0 + i and activation row m0 + j (bit for bit).
void qgemm_w8a8_panels(const Host& host, const xq_qweight& w, const int8_t* qx, const int32_t* qsum, int64_t M,
                       PanelFinish finish);

// Weight-only integer prefill through the table's panel_q8 (the caller checks
// it is not null): qx [M, Kp] int8 activations with one scale per 32-column
// block, sa [M, nblk], and bsum [M, nblk] their per-block code sums (read
// for INT8 codes only). acc[j * kPanelRows + i] is what dot4_q8 / dot8_q8
// returns for that pair (bit for bit on the scalar table).
void qgemm_q8_panels(const Host& host, const xq_qweight& w, const int8_t* qx, const float* sa, const int32_t* bsum,
                     int64_t M, PanelFinish finish);

}  // namespace xquant::cpu
