// gguf_blocks.cpp: the `cpu` provider's foreign-block weights (GGUF / ggml
// block types, xq_block_tensor): preparing them (the bytes are borrowed and
// run in place, so a model mapped from a GGUF file holds no second copy),
// QMATMUL, DEQUANTIZE and GET_ROWS on them.
//
// QMATMUL:
//   - up to XQUANT_CPU_GEMV_ROWS activation rows (default 4: decode): every
//     row quantized once (gguf_blocks.hpp), then threads split the weight's
//     output rows and run the integer block kernel of the row's type,
//     llama.cpp's scheme;
//   - more rows (prefill, perplexity): for Q4_0-only weights on AVX-512
//     (XQUANT_CPU_PREFILL=auto), and Q4_0- or Q8_0-only ones with
//     XQUANT_CPU_PREFILL=int8, the q8 panels of the packed weights
//     (gguf_blocks_panels.hpp);
//     otherwise dequantize a tile of weight rows with the ISA's vector
//     decoder (gguf_dequant.hpp; the loader's scalar one
//     under XQUANT_CPU_ISA=scalar, the same floats) and SGEMM it
//     (sgemm_nt_blocked), the float path the canonical INT4/INT8 weights take.
// Every block type the loader decodes has an integer kernel; others are
// refused at prepare (the engine then reads them as F32). A large
//     XQUANT_CPU_GEMV_ROWS runs prefill through the integer kernels instead
//     (bench_decode_formats compares the two).
// Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K and (AVX-512) Q8_0 parts with an
// interleaved copy for decode (XQUANT_CPU_GEMV_ROWS8=interleaved) read every
// row in whole groups of eight from it, the other readers through the stored
// bytes rebuilt per row (part_row), and ask the kernel to release the stored
// bytes' pages, so the model is not held twice.
// Scratch is thread-local and grow-only: no allocation per call once warm.
#include "gguf_blocks_weight.hpp"

#include "cpu.hpp"
#include "gguf_blocks.hpp"
#include "gguf_blocks_panels.hpp"
#include "gguf_types.hpp"
#include "grown_buffer.hpp"
#include "page_advice.hpp"
#include "qgemm.hpp"
#include "qgemv_rows8.hpp"
#include "qkernels.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>

namespace xquant::cpu {

using sdk::format;

namespace {

[[noreturn]] void unsupported(const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, "cpu provider: foreign blocks: " + why);
}
[[noreturn]] void invalid(const std::string& why) {
  throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: foreign blocks: " + why);
}

const BlockKernels& block_kernels_of(Isa isa) {
  switch (isa) {
    case Isa::avx2: return kAvx2BlockKernels;
    case Isa::avx512: return kAvx512BlockKernels;
    case Isa::scalar: break;
  }
  return kScalarBlockKernels;
}

struct BlockScratch {
  std::vector<int8_t> q, q256;
  std::vector<float> d32, d256, row;
  std::vector<int16_t> bsum, sum32;
  std::vector<uint8_t> rows;  // stored bytes rebuilt from an interleaved copy (part_row)
};
BlockScratch& block_scratch() {
  thread_local BlockScratch s;
  return s;
}

const char* layout_name(const BlockWeight& w) {
  uint32_t t = w.parts[0].type;
  for (const auto& p : w.parts)
    if (p.type != t) return "ggml-blocks (mixed types)";
  switch (t) {
    case gguf::kQ4_0: return "ggml-blocks Q4_0";
    case gguf::kQ4_1: return "ggml-blocks Q4_1";
    case gguf::kQ5_0: return "ggml-blocks Q5_0";
    case gguf::kQ5_1: return "ggml-blocks Q5_1";
    case gguf::kQ8_0: return "ggml-blocks Q8_0";
    case gguf::kQ4_K: return "ggml-blocks Q4_K";
    case gguf::kQ5_K: return "ggml-blocks Q5_K";
    case gguf::kQ6_K: return "ggml-blocks Q6_K";
  }
  return "ggml-blocks";
}

// Activation rows quantized for every part's kernel.
struct QuantizedRows {
  int64_t K = 0;
  int8_t *q = nullptr, *q256 = nullptr;
  float *d32 = nullptr, *d256 = nullptr;
  int16_t *bsum = nullptr, *sum32 = nullptr;
  QuantizedRow row(int64_t m) const {
    return {q + m * K, d32 + m * (K / 32), d256 ? d256 + m * (K / 256) : nullptr, q256 ? q256 + m * K : nullptr,
            bsum ? bsum + m * (K / 16) : nullptr, sum32 + m * (K / 32)};
  }
};

// k_quant_blocks: also the 256-column blocks the K-quant row kernels read
// (not the panels, which take the 32-column ones for every type).
QuantizedRows quantize_rows(const Host& host, const BlockWeight& w, const float* x, int64_t M, bool k_quant_blocks) {
  BlockScratch& s = block_scratch();
  QuantizedRows r;
  r.K = w.cols;
  r.q = grown(s.q, M * w.cols);
  r.d32 = grown(s.d32, M * (w.cols / 32));
  r.sum32 = grown(s.sum32, M * (w.cols / 32));
  if (k_quant_blocks) {
    r.q256 = grown(s.q256, M * w.cols);
    r.d256 = grown(s.d256, M * (w.cols / 256));
    r.bsum = grown(s.bsum, M * (w.cols / 16));
  }
  auto one = [&](int64_t m) {
    quantize_row_blocks(x + m * r.K, r.K, r.q + m * r.K, r.d32 + m * (r.K / 32), r.sum32 + m * (r.K / 32),
                        r.q256 ? r.q256 + m * r.K : nullptr,
                        r.d256 ? r.d256 + m * (r.K / 256) : nullptr, r.bsum ? r.bsum + m * (r.K / 16) : nullptr);
  };
  if (M == 1) one(0);
  else host.parallel_for(static_cast<uint64_t>(M), 1, [&](uint64_t b, uint64_t e) {
    for (uint64_t m = b; m < e; ++m) one(static_cast<int64_t>(m));
  });
  return r;
}

// y[m * N + n] for rows [n0, n1) of the weight and all M activation rows.
void gemv_rows(const BlockWeight& w, const QuantizedRows& a, int64_t M, int64_t n0, int64_t n1, float* y,
               const float* bias) {
  const int64_t N = w.rows;
  constexpr int64_t kTile = 16;  // weight rows kept hot while the activation rows stream past
  uint8_t* rebuilt = grown(block_scratch().rows, kTile * static_cast<int64_t>(w.max_row_bytes));
  const uint8_t* rows[kTile];
  for (int64_t t0 = n0; t0 < n1; t0 += kTile) {
    const int64_t t1 = std::min(n1, t0 + kTile);
    for (int64_t n = t0; n < t1; ++n) {
      const BlockPart& p = w.part_of(n);
      rows[n - t0] = part_row(p, n - p.row0, rebuilt + (n - t0) * w.max_row_bytes);
    }
    for (int64_t m = 0; m < M; ++m) {
      const QuantizedRow qa = a.row(m);
      for (int64_t n = t0; n < t1; ++n) {
        const BlockPart& p = w.part_of(n);
        y[m * N + n] = p.kernel(rows[n - t0], qa, p.blocks_per_row) + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

// Part rows [r0, r1) of a part that runs from its interleaved copy alone
// (rows_from_copy): whole groups of eight through the eight-row kernel, the
// rows before the first (a range starting inside a group) and the tail rows
// through the per-row kernel on their stored bytes (part_row). y and bias are
// indexed by part row.
void gemv_rows_from_copy(const BlockPart& p, const QuantizedRow& a, int64_t r0, int64_t r1, float* y,
                         const float* bias) {
  uint8_t* rebuilt = grown(block_scratch().rows, static_cast<int64_t>(p.row_bytes));
  auto per_row = [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r)
      y[r] = p.kernel(part_row(p, r, rebuilt), a, p.blocks_per_row) + (bias ? bias[r] : 0.0f);
  };
  const int64_t whole = p.rows / 8 * 8, b0 = std::min(r1, (r0 + 7) / 8 * 8), b1 = std::max(b0, std::min(r1, whole) / 8 * 8);
  per_row(r0, b0);
  if (b0 < b1)  // no row outside whole groups: the stored bytes are not read
    p.rows8_kernel(nullptr, p.row_bytes, p.codes8.data(), p.scales8.data(), b0, b1, a, p.blocks_per_row, y, bias);
  per_row(b1, r1);
}

// Decode (one activation row): y[n] for rows [n0, n1), part by part, with
// the part's row-range kernel where its type has one.
void gemv_one_row(const BlockWeight& w, const QuantizedRow& a, int64_t n0, int64_t n1, float* y, const float* bias) {
  for (const BlockPart& p : w.parts) {
    const int64_t r0 = std::max(n0, p.row0), r1 = std::min(n1, p.row0 + p.rows);
    if (r0 >= r1) continue;
    if (p.rows_from_copy()) {
      gemv_rows_from_copy(p, a, r0 - p.row0, r1 - p.row0, y + p.row0, bias ? bias + p.row0 : nullptr);
      continue;
    }
    const uint8_t* wr = p.data + static_cast<uint64_t>(r0 - p.row0) * p.row_bytes;
    if (p.rows_kernel) {
      p.rows_kernel(wr, p.row_bytes, r1 - r0, a, p.blocks_per_row, y + r0, bias ? bias + r0 : nullptr);
      continue;
    }
    for (int64_t n = r0; n < r1; ++n, wr += p.row_bytes)
      y[n] = p.kernel(wr, a, p.blocks_per_row) + (bias ? bias[n] : 0.0f);
  }
}

void qmatmul_int(const Host& host, const BlockWeight& w, const float* x, int64_t M, float* y, const float* bias) {
  const QuantizedRows a = quantize_rows(host, w, x, M, w.k_quants);
  if (M == 1) {
    const QuantizedRow qa = a.row(0);
    // Units of eight rows, so the eight-row kernels see whole groups.
    host.parallel_for(static_cast<uint64_t>((w.rows + 7) / 8), 2, [&](uint64_t b, uint64_t e) {
      gemv_one_row(w, qa, static_cast<int64_t>(b) * 8, std::min(w.rows, static_cast<int64_t>(e) * 8), y, bias);
    });
    return;
  }
  host.parallel_for(static_cast<uint64_t>(w.rows), 16, [&](uint64_t b, uint64_t e) {
    gemv_rows(w, a, M, static_cast<int64_t>(b), static_cast<int64_t>(e), y, bias);
  });
}

void dequantize_rows(const BlockWeight& w, int64_t r0, int64_t r1, float* out) {
  uint8_t* rebuilt = grown(block_scratch().rows, static_cast<int64_t>(w.max_row_bytes));
  for (int64_t r = r0; r < r1; ++r) {
    const BlockPart& p = w.part_of(r);
    const uint8_t* src = part_row(p, r - p.row0, rebuilt);
    if (p.dequant) p.dequant(src, out + (r - r0) * w.cols, p.blocks_per_row);
    else gguf::dequantize_row(p.type, src, out + (r - r0) * w.cols, w.cols);
  }
}

// Prefill: pieces of weight rows dequantized by the pool thread that
// multiplies them, each SGEMM'd while in cache (qgemm.cpp).
void qmatmul_sgemm(const Host& host, const BlockWeight& w, const float* x, int64_t M, float* y, const float* bias) {
  const int64_t N = w.rows;
  sgemm_dequantized_pieces(host, M, N, w.cols, x, [&](int64_t n0, int64_t nr, float* out) {
    dequantize_rows(w, n0, n0 + nr, out);
  }, y);
  if (bias)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += bias[n];
}

template <class T>
void append(std::vector<T>& to, const std::vector<T>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

// The interleaved copy of a part (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K)
// that then serves every reader (rows_from_copy): made chunk by chunk, each
// chunk's stored bytes released once copied, so the stored part and its copy
// are never both resident in full; the rows after the last whole group
// copied as they are; `data` not referenced after. The copy asks for huge
// pages (page_advice.hpp): decode streams it.
void copy_part_rows8(BlockPart& p, bool disposable) {
  constexpr int64_t kChunkRows = 256;
  const int64_t whole = p.rows / 8 * 8, nb = p.blocks_per_row;
  const bool codes_and_scales = p.type == gguf::kQ4_0 || p.type == gguf::kQ8_0;  // Q4_0Rows8Copy
  const int64_t block8_bytes = p.type == gguf::kQ4_K   ? kQ4_KRows8Bytes
                               : p.type == gguf::kQ6_K ? kQ6_KRows8Bytes
                               : p.type == gguf::kQ8_0 ? 256
                               : p.type == gguf::kQ4_0 ? 128
                                                       : legacy_rows8_layout(p.type).block8_bytes;
  reserve_on_huge_pages(p.codes8, static_cast<size_t>(whole / 8 * nb * block8_bytes));  // appends never reallocate
  if (codes_and_scales) p.scales8.reserve(static_cast<size_t>(whole * nb));
  for (int64_t r = 0; r < whole; r += kChunkRows) {
    const int64_t n = std::min(kChunkRows, whole - r);
    const uint8_t* src = p.data + static_cast<uint64_t>(r) * p.row_bytes;
    if (codes_and_scales) {
      const Q4_0Rows8Copy c = p.type == gguf::kQ8_0 ? interleave_q8_0_rows8(src, p.row_bytes, n, nb)
                                                    : interleave_q4_0_rows8(src, p.row_bytes, n, nb);
      append(p.codes8, c.codes);
      append(p.scales8, c.scales);
    } else if (p.type == gguf::kQ4_K) {
      append(p.codes8, interleave_q4_k_rows8(src, p.row_bytes, n, nb));
    } else if (p.type == gguf::kQ6_K) {
      append(p.codes8, interleave_q6_k_rows8(src, p.row_bytes, n, nb));
    } else {
      append(p.codes8, interleave_legacy_rows8(p.type, src, p.row_bytes, n, nb));
    }
    release_pages(src, p.row_bytes * static_cast<uint64_t>(n), disposable);
  }
  p.tail.assign(p.data + p.row_bytes * static_cast<uint64_t>(whole), p.data + p.row_bytes * static_cast<uint64_t>(p.rows));
  release_pages(p.data, p.row_bytes * static_cast<uint64_t>(p.rows), disposable);  // the pages chunks shared too
  p.data = nullptr;
}

}  // namespace

// The stored bytes of part row `r`: in place, or, for a row in a whole group
// of eight of a part whose interleaved copy replaced them (rows_from_copy),
// rebuilt from the copy into `out` (row_bytes of room).
const uint8_t* part_row(const BlockPart& p, int64_t r, uint8_t* out) {
  if (!p.rows_from_copy()) return p.data + static_cast<uint64_t>(r) * p.row_bytes;
  const int64_t whole = p.rows / 8 * 8;
  if (r >= whole) return p.tail.data() + static_cast<uint64_t>(r - whole) * p.row_bytes;
  if (p.type == gguf::kQ4_K) q4_k_row_from_rows8(p.codes8.data(), r / 8, r % 8, p.blocks_per_row, out);
  else if (p.type == gguf::kQ6_K) q6_k_row_from_rows8(p.codes8.data(), r / 8, r % 8, p.blocks_per_row, out);
  else if (p.type == gguf::kQ8_0) q8_0_row_from_rows8(p.codes8.data(), p.scales8.data(), r / 8, r % 8, p.blocks_per_row, out);
  else if (p.type == gguf::kQ4_0) q4_0_row_from_rows8(p.codes8.data(), p.scales8.data(), r / 8, r % 8, p.blocks_per_row, out);
  else legacy_row_from_rows8(p.type, p.codes8.data(), r / 8, r % 8, p.blocks_per_row, out);
  return out;
}

bool blocks_borrow(const BlockWeight& w) {
  for (const auto& p : w.parts)
    if (!p.rows_from_copy()) return true;
  return false;
}

const BlockPart& BlockWeight::part_of(int64_t r) const {
  for (const auto& p : parts)
    if (r < p.row0 + p.rows) return p;
  return parts.back();
}

xq_qweight* prepare_blocks(const xq_block_tensor* parts, uint32_t n) {
  auto bw = std::make_shared<BlockWeight>();
  bw->cols = parts[0].cols;
  const BlockKernels& kernels = block_kernels_of(selected_isa());
  const bool use_rows_kernels = selected_block_rows();
  const GgufDequantKernels* dequant = gguf_dequant_kernels_of(selected_isa());
  const Rows8Mode rows8 = selected_gemv_rows8();
  bw->kernels_name = kernels.name;
  for (uint32_t i = 0; i < n; ++i) {
    const xq_block_tensor& t = parts[i];
    if (t.struct_size < sizeof(xq_block_tensor)) invalid(format("part %u: struct_size %u too small", i, t.struct_size));
    if (t.family != XQ_BLOCKS_GGML) unsupported(format("part %u: block family %u is not ggml (1)", i, t.family));
    const gguf::TypeInfo* ti = gguf::type_info(t.type);
    if (!ti || ti->block_size == 1 || !ti->decodable || !has_block_kernel(t.type))
      unsupported(format("part %u: ggml type %u (%s) is not a block type this provider runs", i, t.type,
                         ti ? ti->name : "unknown"));
    if (t.rows <= 0 || t.cols <= 0 || t.cols % ti->block_size != 0)
      invalid(format("part %u (%s): shape [%lld, %lld]: cols must be a positive multiple of %u", i, ti->name,
                     static_cast<long long>(t.rows), static_cast<long long>(t.cols), ti->block_size));
    if (t.cols != bw->cols)
      invalid(format("part %u has %lld cols, part 0 %lld", i, static_cast<long long>(t.cols), static_cast<long long>(bw->cols)));
    const uint64_t row_bytes = static_cast<uint64_t>(t.cols / ti->block_size) * ti->type_size;
    if (t.row_bytes != row_bytes)
      invalid(format("part %u (%s): row_bytes %llu, %llu expected for %lld cols", i, ti->name,
                     static_cast<unsigned long long>(t.row_bytes), static_cast<unsigned long long>(row_bytes),
                     static_cast<long long>(t.cols)));
    if (!t.data) invalid(format("part %u: data is NULL", i));
    BlockPart p;
    p.type = t.type;
    p.rows = t.rows;
    p.row0 = bw->rows;
    p.row_bytes = row_bytes;
    p.blocks_per_row = t.cols / ti->block_size;
    p.data = static_cast<const uint8_t*>(t.data);
    p.kernel = block_kernel(kernels, t.type);
    p.rows_kernel = use_rows_kernels ? block_rows_kernel(selected_isa(), t.type, rows8 == Rows8Mode::transpose) : nullptr;
    p.dequant = dequant ? gguf_dequant_blocks(*dequant, t.type) : nullptr;
    if (use_rows_kernels && rows8 == Rows8Mode::interleaved) {
      p.rows8_kernel = block_rows8_kernel(selected_isa(), t.type);
      if (p.rows8_kernel) copy_part_rows8(p, (t.flags & XQ_BLOCKS_DISPOSABLE) != 0);  // then serves every reader
    }
    if (p.kernel && ti->block_size == 256) bw->k_quants = true;
    bw->rows += t.rows;
    bw->bytes += row_bytes * static_cast<uint64_t>(t.rows);
    bw->max_row_bytes = std::max(bw->max_row_bytes, row_bytes);
    bw->parts.push_back(std::move(p));
  }
  bw->layout = layout_name(*bw);
  auto w = std::make_unique<xq_qweight>();
  w->rows = bw->rows;
  w->cols = bw->cols;
  w->gemv_max_rows = selected_gemv_max_rows();
  const PrefillMode prefill = selected_prefill_mode();
  w->prefill_int8 = prefill == PrefillMode::int8;
  bw->panels = blocks_prefill_panels(*bw, prefill, selected_isa());
  w->block_bytes = bw->bytes;
  w->blocks = std::move(bw);
  return w.release();
}

void run_blocks_qmatmul(const Host& host, const xq_op& op) {
  const xq_qweight& q = *op.qweight;
  const BlockWeight& w = *q.blocks;
  const int64_t M = rows_of(op.src[0]);
  if (M == 0) return;
  const float* x = static_cast<const float*>(op.src[0].data);
  float* y = static_cast<float*>(op.dst.data);
  const float* bias = present(op.src[2]) ? static_cast<const float*>(op.src[2].data) : nullptr;
  if (M > q.gemv_max_rows && M >= kPanelMinActRows && w.panels) {
    // Q4_0 / Q8_0 / Q4_K / Q6_K prefill on the q8 panels (blocks_prefill_panels says when).
    const QuantizedRows a = quantize_rows(host, w, x, M, false);
    return qmatmul_blocks_panels(host, w, *w.panels, a.q, a.d32, a.sum32, M, y, bias);
  }
  // XQUANT_CPU_PREFILL=int8: prefill too quantizes its activation rows once
  // and runs the blocks' integer dot products (16 weight rows kept hot while
  // the rows stream past), as llama.cpp's mul_mat does.
  if (M <= q.gemv_max_rows || q.prefill_int8) qmatmul_int(host, w, x, M, y, bias);
  else qmatmul_sgemm(host, w, x, M, y, bias);
}

void run_blocks_dequantize(const Host& host, const xq_op& op) {
  const BlockWeight& w = *op.qweight->blocks;
  const xq_dtype dt = op.dst.dtype;
  host.parallel_for(static_cast<uint64_t>(w.rows), 8, [&](uint64_t b, uint64_t e) {
    for (uint64_t r = b; r < e; ++r) {
      if (dt == XQ_DTYPE_F32) {
        dequantize_rows(w, static_cast<int64_t>(r), static_cast<int64_t>(r) + 1, static_cast<float*>(op.dst.data) + r * w.cols);
        continue;
      }
      float* buf = grown(block_scratch().row, w.cols);
      dequantize_rows(w, static_cast<int64_t>(r), static_cast<int64_t>(r) + 1, buf);
      uint16_t* o = static_cast<uint16_t*>(op.dst.data) + r * w.cols;
      for (int64_t i = 0; i < w.cols; ++i) o[i] = dt == XQ_DTYPE_F16 ? sdk::f32_to_f16(buf[i]) : sdk::f32_to_bf16(buf[i]);
    }
  });
}

void check_blocks_get_rows(const xq_op& op) {
  auto need = [](bool c, const char* why) {
    if (!c) throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: GET_ROWS (foreign blocks): %s", why));
  };
  need(op.qweight->blocks != nullptr, "qweight is not a foreign-block weight");
  need(!present(op.src[0]), "src[0] must be absent when qweight is the table");
  const auto& ids = op.src[1];
  need(present(ids) && is_contiguous(ids) && ids.dtype == XQ_DTYPE_I32, "src[1] must be contiguous I32 ids");
  const auto& d = op.dst;
  need(present(d) && is_contiguous(d) && d.dtype == XQ_DTYPE_F32, "dst must be contiguous F32");
  need(rows_of(d) == numel(ids) && cols_of(d) == op.qweight->cols, "dst must be [T, D]");
}

void run_blocks_get_rows(const Host&, const xq_op& op) {
  const BlockWeight& w = *op.qweight->blocks;
  const int32_t* ids = static_cast<const int32_t*>(op.src[1].data);
  float* y = static_cast<float*>(op.dst.data);
  const int64_t T = numel(op.src[1]);
  for (int64_t t = 0; t < T; ++t)
    if (ids[t] < 0 || ids[t] >= w.rows)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("cpu provider: GET_ROWS: id %d at position %lld is outside [0, %lld)",
                                                  ids[t], static_cast<long long>(t), static_cast<long long>(w.rows)));
  for (int64_t t = 0; t < T; ++t) dequantize_rows(w, ids[t], ids[t] + 1, y + t * w.cols);
}

}  // namespace xquant::cpu
