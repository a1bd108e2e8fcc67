// qweight.cpp: the `cpu` provider's quantized weights: packing a canonical
// quantized tensor into the layout its kernels stream (qkernels.hpp: INT4 two
// codes per byte, INT8 one, every group padded to whole 32-column blocks),
// DEQUANTIZE, and QMATMUL:
//   - weight-only decode (M <= 4, XQUANT_CPU_GEMV_ROWS): a fused GEMV per output row, either float
//     FMAs on unpacked codes (exact up to float rounding; XQUANT_CPU_GEMV=f32,
//     the default only for INT8 weights on the scalar ISA) or the activation
//     row quantized once per call to int8 with one scale per 32-column block
//     and integer dot products (as llama.cpp's Q4_0 x Q8_0 path; the default,
//     XQUANT_CPU_GEMV=q8), one activation row through the row-range GEMV of
//     qgemv_rows.hpp;
//   - weight-only prefill: the q8 activations of the GEMV and, from 16 rows,
//     VNNI panels of 16 weight rows (qgemm.cpp, the W8A8 panels with one
//     activation scale per block), below that integer tiles of 4 weight rows
//     x 2 activation rows (qkernels.hpp): by default where decode takes q8
//     and the CPU has AVX-512 VNNI (XQUANT_CPU_PREFILL=auto); otherwise, or
//     with XQUANT_CPU_PREFILL=sgemm, pieces of 128 rows dequantized and each
//     multiplied by OpenBLAS SGEMM while it is in cache (qgemm.cpp);
//   - W8A8 (any M): activations quantized per token (or with the static
//     scale) to int8 and exact int32 dot products per group, so measured
//     quality reflects real W8A8 numerics; prefill (M > 4) on AVX-512 VNNI
//     through panels of 16 weight rows (qgemm.cpp), the same bits.
// Kernels come from the table chosen at prepare time (qkernels_dispatch.cpp).
// Packing itself is sdk/include/xquant/sdk/cpu_layout.hpp (shared with the
// `xq` writer, which stores the packed bytes; adopt reads those in place).
//
// Act-order (g_idx) is handled once at prepare time: columns are permuted so
// each group is a contiguous range, and the activation row is gathered into
// the same (permuted, padded) order at run time. Every kernel then loops
// over whole blocks of contiguous groups, with no tail.
#include "cpu.hpp"
#include "gguf_blocks_weight.hpp"
#include "grown_buffer.hpp"
#include "int8_rounding.hpp"
#include "qgemm.hpp"
#include "qgemm_kernels.hpp"
#include "qgemv_rows.hpp"
#include "qgemv_rows8.hpp"
#include "qkernels.hpp"
#include "qweight_codes.hpp"

#include <xquant/sdk/fp8.hpp>
#include <xquant/sdk/half.hpp>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>

namespace xquant::cpu {

using sdk::format;

namespace {

// Row r's packed codes (rebuilt into a per-thread buffer when the weight
// keeps only its interleaved decode copy, qweight_codes.hpp); valid until the
// calling thread's next call.
const uint8_t* row_codes(const xq_qweight& w, int64_t r) {
  thread_local std::vector<uint8_t> buf;
  return codes_of_rows(w, r, 1, buf);
}

// Byte and nibble of padded column p in an INT4 row (layout in qkernels.hpp).
using sdk::cpu_layout::int4_byte;
using sdk::cpu_layout::int4_high;
static_assert(sdk::cpu_layout::kBlock == kBlock, "the SDK's cpu layout and the kernels' block differ");

// The signed code at padded column p of a packed row.
inline int code_at(const xq_qweight& w, const uint8_t* row, int64_t p) {
  if (!w.int4) return static_cast<int8_t>(row[p]);
  uint8_t b = row[int4_byte(p)];
  return (int4_high(p) ? b >> 4 : b & 0x0F) - 8;
}

// Per-calling-thread buffers of run_qmatmul, grown on demand and reused, so a
// decode step allocates nothing once the largest shape has been seen.
struct Scratch {
  std::vector<float> x, xsum, sa, xq;
  std::vector<int8_t> qa;
  std::vector<int32_t> qsum;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// x [M, cols] in the weight's column order, padded with zeros: x itself when
// that is already the case (no act-order, every group a whole number of blocks).
const float* gather_padded(const xq_qweight& w, const float* x, int64_t M, std::vector<float>& buf) {
  if (w.perm.empty() && w.padded_cols == w.cols) return x;
  float* xp = grown(buf, M * w.padded_cols);
  std::fill(xp, xp + M * w.padded_cols, 0.0f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < w.n_groups; ++g) {
      float* dst = xp + m * w.padded_cols + w.block_begin[g] * kBlock - w.group_begin[g];
      for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j)
        dst[j] = x[m * w.cols + (w.perm.empty() ? j : w.perm[j])];
    }
  return xp;
}

// Quantizes a padded activation row to int8 with one scale per 32-column
// block (llama.cpp's quantize_row_q8_0: s = max|x| / 127, q = round(x / s)).
void quantize_row_q8_blocks(const float* x, int64_t nblk, int8_t* q, float* sa) {
  for (int64_t b = 0; b < nblk; ++b) {
    const float* xb = x + b * kBlock;
    const float amax = abs_max(xb, kBlock);
    sa[b] = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    scale_round_i8(xb, kBlock, inv, -127.0f, 127.0f, q + b * kBlock);
  }
}

// What a group's code offset is: the kernels see unsigned nibbles (code + 8)
// for INT4 and signed codes for INT8; the zero point adds to that.
inline float group_offset(const xq_qweight& w, const float* z, int64_t g) {
  return (w.int4 ? 8.0f : 0.0f) + (z ? z[g] : 0.0f);
}

}  // namespace

namespace {

// XQUANT_CPU_GEMV=auto: int8 activations (q8) for INT4 weights everywhere,
// and for INT8 weights wherever a vector ISA runs them: on AVX2 q8 measured
// 1.28-1.32x f32 at 1 thread and 1.11-1.20x at 2 (SmolLM2 and Qwen2.5 W8A16,
// same run, docs/engine.md); on AVX-512, since the 256-bit VNNI row kernel
// (qgemv_rows_avx512.cpp), 1.5-2.6x (it had been 0.95x with the 512-bit one).
// The scalar ISA keeps f32 for INT8.
bool auto_gemv_q8(bool int4, Isa isa) { return int4 || isa != Isa::scalar; }

// XQUANT_CPU_PREFILL=auto: integer prefill where decode already multiplies
// int8 activations and the ISA's panels measured faster than dequantize +
// SGEMM for the weight's code width (the table's flags; never the scalar
// table's plain loops, which OpenBLAS SGEMM outruns).
bool auto_prefill_int8(bool gemv_q8, bool int4, const QGemmKernels& k) {
  return gemv_q8 && k.panel_q8 != nullptr && (int4 ? k.q8_panels_by_default_int4 : k.q8_panels_by_default_int8);
}

// The fields every qweight has, from its geometry and description.
std::unique_ptr<xq_qweight> new_qweight(const sdk::cpu_layout::Geometry& g, const xq_quant_tensor& q) {
  auto w = std::make_unique<xq_qweight>();
  w->rows = g.rows;
  w->cols = g.cols;
  w->n_groups = g.n_groups;
  w->bits = g.bits;
  w->int4 = g.int4;
  w->padded_cols = g.padded_cols;
  w->row_bytes = g.row_bytes;
  w->group_begin = g.group_begin;
  w->block_begin = g.block_begin;
  w->act_scheme = q.act_scheme;
  w->act_fp8 = q.act_scheme == XQ_ACT_DYNAMIC_TOKEN && q.act_bits == XQ_BITS_F8_E4M3;
  w->input_scale = q.input_scale;
  w->kernels = &kernels_of(selected_isa());
  w->gemm_kernels = &qgemm_kernels_of(selected_isa());
  w->gemv_rows = &gemv_rows_table(selected_isa(), selected_gemv_rows8());
  const GemvMode mode = selected_gemv_mode();
  w->gemv_q8 = mode == GemvMode::q8 || (mode == GemvMode::automatic && auto_gemv_q8(g.int4, selected_isa()));
  w->gemv_max_rows = selected_gemv_max_rows();
  const PrefillMode prefill = selected_prefill_mode();
  w->prefill_int8 = prefill == PrefillMode::int8 ||
                    (prefill == PrefillMode::automatic && auto_prefill_int8(w->gemv_q8, g.int4, *w->gemm_kernels));
  const W8A8PrefillMode w8a8 = selected_w8a8_prefill_mode();
  w->w8a8_prefill_sgemm = w8a8 == W8A8PrefillMode::sgemm ||
                          (w8a8 == W8A8PrefillMode::automatic && !g.int4 && !w->gemm_kernels->panels_for_int8);
  return w;
}

// Whether decode reads an interleaved copy of w (qgemv_rows8.hpp): INT4
// weight-only weights where the ISA's table has an eight-row INT4 kernel,
// and on AVX-512 VNNI INT8 ones, weight-only (the rows8i table's gemv8) and
// W8A8 with symmetric weights and INT8 activations (qmatmul_w8a8's decode).
bool decode_reads_rows8_copy(const xq_qweight& w) {
  if (selected_gemv_rows8() != Rows8Mode::interleaved) return false;
  if (w.act_scheme == XQ_ACT_NONE)
    return w.gemv_q8 && w.gemv_rows != &gemv_rows_of(selected_isa()) && (w.int4 || selected_isa() == Isa::avx512);
  return !w.int4 && !w.act_fp8 && !w.zeros && selected_isa() == Isa::avx512;
}

// The interleaved copy of a weight whose decode reads one, from the codes
// and scales just set.
void add_rows8_copy(xq_qweight& w) {
  if (!decode_reads_rows8_copy(w)) return;
  const int64_t nblk = w.block_begin[w.n_groups];
  Rows8Copy c = w.int4 ? interleave_rows8(w.codes, w.row_bytes, w.scales, w.rows, w.n_groups, nblk)
                       : interleave_int8_rows8(w.codes, w.row_bytes, w.scales, w.rows, w.n_groups, nblk);
  w.codes8 = std::move(c.codes);
  w.scales8 = std::move(c.scales);
  release_row_major_codes(w);
}

}  // namespace

xq_qweight* prepare_qweight(const xq_quant_tensor& q) {
  if (q.struct_size >= sizeof(xq_quant_tensor) && sdk::is_float_code(q.bits)) return prepare_fp8_qweight(q);
  sdk::cpu_layout::Packed p = sdk::cpu_layout::pack(q);
  auto w = new_qweight(p.geo, q);
  w->perm = p.perm;
  w->owned = std::move(p);
  w->codes = w->owned.codes.data();
  w->scales = w->owned.scales.data();
  w->zeros = w->owned.zeros.empty() ? nullptr : w->owned.zeros.data();
  add_rows8_copy(*w);
  return w.release();
}

xq_qweight* adopt_qweight(const xq_quant_tensor& desc, const void* data, uint64_t nbytes) {
  // The description carries no buffers; the stored header says whether the
  // weight has act-order (a perm part) and zero points.
  sdk::cpu_layout::View v = sdk::cpu_layout::view(desc, data, nbytes);
  auto w = new_qweight(v.geo, desc);
  w->perm = std::move(v.perm);
  w->codes = v.codes;
  w->scales = v.scales;
  w->zeros = v.zeros;
  w->adopted = true;
  add_rows8_copy(*w);
  return w.release();
}

const char* packed_layout_of(const xq_quant_tensor& desc) {
  if (sdk::is_float_code(desc.bits)) return nullptr;  // FP8 has no stored cpu layout
  int64_t n_groups = 0, group_size = 0;
  sdk::cpu_layout::check_description(desc, n_groups, group_size);
  return sdk::cpu_layout::kName;
}

void check_quant(const xq_op& op) {
  auto need = [&](bool c, const char* why) {
    if (!c) throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: %s: %s", op.type == XQ_OP_QMATMUL ? "QMATMUL" : "DEQUANTIZE", why));
  };
  const xq_qweight* w = op.qweight;
  need(w != nullptr, "qweight missing");
  const auto& d = op.dst;
  need(present(d) && is_contiguous(d) && d.ndim >= 1 && d.ndim <= 4, "dst must be a present contiguous tensor");
  if (op.type == XQ_OP_DEQUANTIZE) {
    need(d.dtype == XQ_DTYPE_F32 || d.dtype == XQ_DTYPE_F16 || d.dtype == XQ_DTYPE_BF16, "dst must be F32/F16/BF16");
    need(rows_of(d) == w->rows && cols_of(d) == w->cols, "dst must be [N, K] of the weight");
    return;
  }
  const auto& x = op.src[0];
  need(present(x) && is_contiguous(x) && x.ndim >= 1 && x.ndim <= 4 && x.dtype == XQ_DTYPE_F32, "src[0] must be contiguous F32");
  need(cols_of(x) == w->cols, "src[0] K differs from the weight's cols");
  need(d.dtype == XQ_DTYPE_F32 && rows_of(d) == rows_of(x) && cols_of(d) == w->rows, "dst must be F32 [M, N]");
  if (present(op.src[2]))
    need(op.src[2].dtype == XQ_DTYPE_F32 && is_contiguous(op.src[2]) && numel(op.src[2]) == w->rows, "bias must be F32 [N]");
}

void run_dequantize(const Host& host, const xq_op& op) {
  if (op.qweight->blocks) return run_blocks_dequantize(host, op);
  const xq_qweight& w = *op.qweight;
  if (w.fp8) return run_fp8_dequantize(host, op);
  xq_dtype dt = op.dst.dtype;
  void* out = op.dst.data;
  host.parallel_for(static_cast<uint64_t>(w.rows), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) {
      const uint8_t* c = row_codes(w, static_cast<int64_t>(r));
      const float* s = w.scales + r * w.n_groups;
      const float* z = !w.zeros ? nullptr : w.zeros + r * w.n_groups;
      for (int64_t g = 0; g < w.n_groups; ++g) {
        const float sg = s[g], zg = z ? z[g] : 0.0f;
        const int64_t p0 = w.block_begin[g] * kBlock - w.group_begin[g];
        for (int64_t j = w.group_begin[g]; j < w.group_begin[g + 1]; ++j) {
          // The same expression as the canonical (code - zp) * scale.
          const float v = (static_cast<float>(code_at(w, c, p0 + j)) - zg) * sg;
          const int64_t i = static_cast<int64_t>(r) * w.cols + (w.perm.empty() ? j : w.perm[j]);
          if (dt == XQ_DTYPE_F32) static_cast<float*>(out)[i] = v;
          else if (dt == XQ_DTYPE_F16) static_cast<uint16_t*>(out)[i] = sdk::f32_to_f16(v);
          else static_cast<uint16_t*>(out)[i] = sdk::f32_to_bf16(v);
        }
      }
    }
  });
}

namespace {

// Weight-only prefill: pieces of weight rows dequantized into a per-thread
// buffer and multiplied by SGEMM while hot (qgemm.cpp).
void qgemm_weight_only(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = w.rows;
  qgemm_dequant_sgemm(host, w, x, M, y);
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}

// W8A8: int8 activations (per token or static), exact int32 dot per group
// (prefill on AVX2: float products of the same int8 images, below).
void qmatmul_w8a8(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = w.rows, Kp = w.padded_cols, G = w.n_groups;
  const QKernels& k = *w.kernels;
  Scratch& sc = scratch();
  int8_t* qx = grown(sc.qa, M * Kp);
  float* sx = grown(sc.sa, M);
  // Prefill where integer dots do not beat FMA (INT8 codes on AVX2): the
  // activations' int8 images, scaled back, times the dequantized weight by
  // SGEMM. Same quantization as the integer path; the products and sums are
  // rounded to F32 (relative ~1e-7 per term) instead of kept exact.
  const bool by_sgemm = M > w.gemv_max_rows && M >= kPanelMinActRows && w.w8a8_prefill_sgemm;
  float* images = by_sgemm ? grown(sc.xq, M * Kp) : nullptr;
  int32_t* qsum = by_sgemm ? nullptr : grown(sc.qsum, M * G);
  const float st = w.act_scheme == XQ_ACT_STATIC_TENSOR ? w.input_scale : 0.0f;
  host.parallel_for(static_cast<uint64_t>(M), 16, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) {
      const int64_t m = static_cast<int64_t>(r);
      const int8_t* q = qx + m * Kp;
      sx[m] = quantize_row_i8(x + m * Kp, Kp, qx + m * Kp, st);
      if (images) {
        for (int64_t p = 0; p < Kp; ++p) images[m * Kp + p] = static_cast<float>(q[p]) * sx[m];
        continue;
      }
      for (int64_t g = 0; g < G; ++g) {
        int32_t s = 0;
        for (int64_t p = w.block_begin[g] * kBlock; p < w.block_begin[g + 1] * kBlock; ++p) s += q[p];
        qsum[m * G + g] = s;
      }
    }
  });
  if (by_sgemm) return qgemm_weight_only(host, w, images, M, y, bias);
  // y[m, n] from the exact per-group integer dot products: offsets, the
  // activation scale, the bias.
  auto finish = [&](int64_t n, int64_t m, float acc) {
    const float* s = w.scales + n * G;
    const float* z = !w.zeros ? nullptr : w.zeros + n * G;
    if (w.int4 || z)
      for (int64_t g = 0; g < G; ++g) acc -= s[g] * group_offset(w, z, g) * static_cast<float>(qsum[m * G + g]);
    y[m * N + n] = sx[m] * acc + (bias ? bias[n] : 0.0f);
  };
  const QGemmKernels& gk = *w.gemm_kernels;
  if (M > w.gemv_max_rows && M >= kPanelMinActRows && gk.panel_i8 && (w.int4 || gk.panels_for_int8)) {
    // Prefill: panels of 16 weight rows packed once and reused by every
    // activation row (qgemm.cpp), the same dot products bit for bit.
    qgemm_w8a8_panels(host, w, qx, qsum, M, [&](int64_t n0, int64_t nr, int64_t m0, int64_t mt, const float* acc) {
      for (int64_t j = 0; j < mt; ++j)
        for (int64_t i = 0; i < nr; ++i) finish(n0 + i, m0 + j, acc[j * kPanelRows + i]);
    });
    return;
  }
  const int64_t* bb = w.block_begin.data();
  // Dynamic scales keep the codes within [-127, 127] (quantize_row_i8).
  const auto dot8 = w.act_scheme == XQ_ACT_STATIC_TENSOR ? k.dot8_i8 : k.dot8_i8_a127;
  if (M <= w.gemv_max_rows && !w.codes8.empty()) {
    // Decode on the interleaved INT8 copy (qgemv_rows8.hpp, AVX-512 VNNI):
    // whole groups of eight rows a task, dot8's values; the rows after the
    // last whole group (codes_tail) through dot8.
    const int64_t whole = N / 8;
    host.parallel_for(static_cast<uint64_t>(whole), 2, [&](uint64_t b, uint64_t e) {
      w8a8_rows8_interleaved_avx512(w.codes8.data(), w.scales8.data(), bb, G, qx, Kp, qsum, M, static_cast<int64_t>(b),
                                    static_cast<int64_t>(e), y, N);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = static_cast<int64_t>(b) * 8; n < static_cast<int64_t>(e) * 8; ++n) finish(n, m, y[m * N + n]);
    });
    for (int64_t n = whole * 8; n < N; ++n)
      for (int64_t m = 0; m < M; ++m)
        finish(n, m, dot8(reinterpret_cast<const int8_t*>(row_codes(w, n)), qx + m * Kp, bb, G, w.scales + n * G));
    return;
  }
  host.parallel_for(static_cast<uint64_t>(N), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t n = b; n < e; ++n) {
      const uint8_t* c = row_codes(w, static_cast<int64_t>(n));
      const float* s = w.scales + n * G;
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* a = qx + m * Kp;
        finish(static_cast<int64_t>(n), m,
               w.int4 ? k.dot4_i8(c, a, bb, G, s) : dot8(reinterpret_cast<const int8_t*>(c), a, bb, G, s));
      }
    }
  });
}

// Weight-only decode of one activation row with int8 activations: the row
// quantized once, then the ISA's row-range GEMV over each thread's share of
// the output rows (qgemv_rows.hpp): no per-row call or offset loop.
void qgemv_q8_one_row(const Host& host, const xq_qweight& w, const float* x, float* y, const float* bias) {
  const GemvRowsKernels& k = *w.gemv_rows;
  const int64_t G = w.n_groups;
  thread_local QuantizedActsBuffers buf;
  const QuantizedActs a = quantize_acts(k, w.int4, x, w.block_begin[G], w.block_begin.data(), G, w.zeros != nullptr, buf);
  const PackedRows rows{w.codes, w.row_bytes, w.scales, w.zeros, w.block_begin.data(), G, bias,
                        w.codes8.empty() ? nullptr : w.codes8.data(), w.scales8.empty() ? nullptr : w.scales8.data()};
  auto gemv = w.int4 ? k.gemv4 : k.gemv8;
  // Without row-major codes (qweight_codes.hpp) the interleaved copy covers
  // the whole groups of eight and the rows after them are their own weight.
  const int64_t N = w.codes ? w.rows : w.rows / 8 * 8;
  // Units of eight rows, so the eight-row kernels see whole groups.
  host.parallel_for(static_cast<uint64_t>((N + 7) / 8), 2, [&](uint64_t b, uint64_t e) {
    gemv(rows, a, static_cast<int64_t>(b) * 8, std::min(N, static_cast<int64_t>(e) * 8), y);
  });
  if (N < w.rows) {
    const PackedRows tail{w.codes_tail.data(), w.row_bytes, w.scales + N * G, w.zeros ? w.zeros + N * G : nullptr,
                          w.block_begin.data(), G, bias ? bias + N : nullptr, nullptr, nullptr};
    gemv(tail, a, 0, w.rows - N, y + N);
  }
}

// Weight-only decode: one fused GEMV per output row over the packed codes;
// with q8 activations, one row takes the row-range GEMV above, and whole
// kTileRows x kTileCols tiles go through the integer tile kernels (integer
// prefill), the ragged edges pair by pair, with the same result bit for bit.
void qgemv_weight_only(const Host& host, const xq_qweight& w, const float* x, int64_t M, float* y, const float* bias,
                       bool q8) {
  if (q8 && M == 1) return qgemv_q8_one_row(host, w, x, y, bias);
  const int64_t N = w.rows, Kp = w.padded_cols, G = w.n_groups, nblk = w.block_begin[G];
  const QKernels& k = *w.kernels;
  Scratch& sc = scratch();
  // Per group: sum of the activations the offset multiplies (float path), or
  // of their int8 images times the block scales (q8 path).
  float* xsum = grown(sc.xsum, M * G);
  int8_t* qx = q8 ? grown(sc.qa, M * Kp) : nullptr;
  float* sa = q8 ? grown(sc.sa, M * nblk) : nullptr;
  int32_t* bsum = q8 ? grown(sc.qsum, M * nblk) : nullptr;  // per-block code sums (INT8 panels)
  for (int64_t m = 0; m < M; ++m) {
    if (qx) quantize_row_q8_blocks(x + m * Kp, nblk, qx + m * Kp, sa + m * nblk);
    for (int64_t g = 0; g < G; ++g) {
      float s = 0.0f;
      for (int64_t b = w.block_begin[g]; b < w.block_begin[g + 1]; ++b)
        if (qx) {
          int32_t qs = 0;
          for (int i = 0; i < kBlock; ++i) qs += qx[m * Kp + b * kBlock + i];
          bsum[m * nblk + b] = qs;
          s += sa[m * nblk + b] * static_cast<float>(qs);
        } else {
          for (int i = 0; i < kBlock; ++i) s += x[m * Kp + b * kBlock + i];
        }
      xsum[m * G + g] = s;
    }
  }
  const int64_t* bb = w.block_begin.data();
  // y[m, n] from the kernel's dot product: the offsets and the bias.
  auto finish = [&](int64_t n, int64_t m, float acc) {
    const float* s = w.scales + n * G;
    const float* z = !w.zeros ? nullptr : w.zeros + n * G;
    if (w.int4 || z)
      for (int64_t g = 0; g < G; ++g) acc -= s[g] * group_offset(w, z, g) * xsum[m * G + g];
    y[m * N + n] = acc + (bias ? bias[n] : 0.0f);
  };
  const QGemmKernels& gk = *w.gemm_kernels;
  if (qx && M >= kPanelMinActRows && gk.panel_q8) {
    // Integer prefill: panels of 16 weight rows packed once and reused by
    // every activation row (qgemm.cpp), each output what the pair's dot*_q8
    // gives (bit for bit on the scalar table).
    qgemm_q8_panels(host, w, qx, sa, bsum, M, [&](int64_t n0, int64_t nr, int64_t m0, int64_t mt, const float* acc) {
      for (int64_t j = 0; j < mt; ++j)
        for (int64_t i = 0; i < nr; ++i) finish(n0 + i, m0 + j, acc[j * kPanelRows + i]);
    });
    return;
  }
  auto pair = [&](const uint8_t* c, int64_t n, int64_t m) {
    const int8_t* c8 = reinterpret_cast<const int8_t*>(c);
    const float* s = w.scales + n * G;
    float acc;
    if (qx) {
      const int8_t* a = qx + m * Kp;
      const float* sb = sa + m * nblk;
      acc = w.int4 ? k.dot4_q8(c, a, sb, bb, G, s) : k.dot8_q8(c8, a, sb, bb, G, s);
    } else {
      const float* a = x + m * Kp;
      acc = w.int4 ? k.dot4_f32(c, a, bb, G, s) : k.dot8_f32(c8, a, bb, G, s);
    }
    finish(n, m, acc);
  };
  const bool tiled = qx && M >= kTileCols;
  const int64_t step = tiled ? kTileRows : 1;
  const uint64_t units = static_cast<uint64_t>((N + step - 1) / step);
  host.parallel_for(units, tiled ? 4 : 16, [&](uint64_t b, uint64_t e) {
    for (uint64_t unit = b; unit < e; ++unit) {
      const int64_t n0 = static_cast<int64_t>(unit) * step, nr = std::min(step, N - n0);
      int64_t m = 0;
      if (tiled && nr == kTileRows) {
        thread_local std::vector<uint8_t> tile_rows;
        const uint8_t* c = codes_of_rows(w, n0, kTileRows, tile_rows);  // once for every column tile
        for (; m + kTileCols <= M; m += kTileCols) {
          float out[kTileRows * kTileCols];
          if (w.int4)
            k.tile4_q8(c, w.row_bytes, w.scales + n0 * G, qx + m * Kp, Kp, sa + m * nblk, nblk, bb, G, out);
          else
            k.tile8_q8(reinterpret_cast<const int8_t*>(c), w.row_bytes, w.scales + n0 * G, qx + m * Kp, Kp,
                       sa + m * nblk, nblk, bb, G, out);
          for (int64_t i = 0; i < kTileRows; ++i)
            for (int64_t j = 0; j < kTileCols; ++j) finish(n0 + i, m + j, out[i * kTileCols + j]);
        }
      }
      if (m == M) continue;
      for (int64_t n = n0; n < n0 + nr; ++n) {
        const uint8_t* c = row_codes(w, n);  // once for every activation row
        for (int64_t mm = m; mm < M; ++mm) pair(c, n, mm);
      }
    }
  });
}

}  // namespace

void run_qmatmul(const Host& host, const xq_op& op) {
  if (op.qweight->blocks) return run_blocks_qmatmul(host, op);
  const xq_qweight& w = *op.qweight;
  if (w.fp8) return run_fp8_qmatmul(host, op);
  const int64_t M = rows_of(op.src[0]);
  float* y = static_cast<float*>(op.dst.data);
  const float* bias = present(op.src[2]) ? static_cast<const float*>(op.src[2].data) : nullptr;
  if (M == 0) return;
  const float* x = gather_padded(w, static_cast<const float*>(op.src[0].data), M, scratch().x);
  // Padding columns are zero and act-order only permutes, so each row's
  // max |x| (the FP8 scale) is the unpadded row's.
  if (w.act_fp8) x = round_rows_to_e4m3(x, M, w.padded_cols);
  if (w.act_scheme != XQ_ACT_NONE && !w.act_fp8) qmatmul_w8a8(host, w, x, M, y, bias);
  else if (M <= w.gemv_max_rows) qgemv_weight_only(host, w, x, M, y, bias, w.gemv_q8);
  else if (w.prefill_int8) qgemv_weight_only(host, w, x, M, y, bias, /*q8=*/true);
  else qgemm_weight_only(host, w, x, M, y, bias);
}

}  // namespace xquant::cpu
