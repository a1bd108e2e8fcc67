// compact_tables.cpp: the embedding table and lm_head in fewer bytes on a
// host provider (ModelOptions::tables, XQUANT_TABLES).
//
// Quantizers leave the embedding and lm_head unquantized, and many files
// store them in F32 (compressed-tensors checkpoints quantized from an F32
// model). At batch 1 the lm_head GEMV then dominates decode: SmolLM2-135M's
// tied 49152 x 576 table is 113 MB of the 168 MB a W4A16 token reads, and
// Qwen2.5-Coder-1.5B's untied 151936 x 1536 embedding and lm_head are 1.87 GB
// of F32. llama.cpp keeps both quantized (its quantizer writes the output
// tensor as Q8_0 or Q6_K: llama-quant.cpp, llama_tensor_get_type). Forms:
//
// - as stored (default, exact): a BF16 or F16 table stays in its dtype
//   (bf16_embedding.cpp for the embedding; an untied lm_head likewise, here):
//   widening to F32 is exact and the cpu 16-bit MATMUL is bit-identical to
//   its F32 one. An F32 table whose every value is a BF16 value (a BF16
//   model saved in float32, as torch does when it loads one as float32 and
//   saves it) is held in BF16 too: the same numbers in half the bytes. Other
//   F32 tables are held in F32.
// - bf16 (opt-in): F32/F16 tables rounded to BF16 (round to nearest even):
//   half the bytes (F32), one BF16 rounding of every weight.
// - auto (default): q8_0 for a quantized checkpoint, as stored for a float
//   one (default_table_form; the perplexity it costs is in docs/engine.md).
// - q8_0: every float table encoded as ggml Q8_0 blocks (32 int8
//   codes and one f16 scale max|x|/127 per 32 columns, 34 bytes: ggml's
//   quantize_row_q8_0_ref in ggml-quants.c) and run by the provider's block
//   kernels as a GGUF Q8_0 file's would be: GET_ROWS dequantizes the looked-up
//   rows, lm_head is the Q8_0 x Q8_0 integer GEMV. 1.0625 bytes per weight.
//
// The tables are converted part by part from the loader's mapped view, each
// part's pages given back once read, so the F32 table is never resident in
// full beside its compact copy.
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/foreign_blocks.hpp"
#include "engine/model.hpp"
#include "engine/release_source.hpp"

#include <xquant/sdk/half.hpp>

#include <strings.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace xquant {

namespace {

constexpr int64_t kQ8Block = 32;     // columns per Q8_0 block (ggml QK8_0)
constexpr int64_t kQ8Bytes = 34;     // f16 scale + 32 int8 codes
constexpr uint32_t kGgmlQ8_0 = 8;    // ggml.h GGML_TYPE_Q8_0
constexpr int64_t kPartRows = 2048;  // rows converted per part

const char* form_name(TableForm f) {
  switch (f) {
    case TableForm::kAuto: return "auto";
    case TableForm::kAsStored: return "as-stored";
    case TableForm::kBf16: return "bf16";
    case TableForm::kQ8_0: return "q8_0";
  }
  return "?";
}

// One Q8_0 block of x[0..32): ggml's quantize_row_q8_0_ref.
void encode_q8_0_block(const float* x, uint8_t* b) {
  float amax = 0;
  for (int64_t j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
  const uint16_t h = sdk::f32_to_f16(d);
  std::memcpy(b, &h, 2);
  for (int64_t j = 0; j < kQ8Block; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
}

bool is_float(xq_dtype t) { return t == XQ_DTYPE_F32 || t == XQ_DTYPE_F16 || t == XQ_DTYPE_BF16; }

// True when `t` is F32 and every value has zero low 16 bits, so BF16 holds
// it exactly. Reads the loader's view and stops at the first value that is
// not (a real F32 table fails within its first few values); false when
// there is no view to read.
bool f32_values_are_bf16(const Checkpoint& cp, const TensorEntry& t) {
  if (t.dtype != XQ_DTYPE_F32 || t.shape.size() != 2) return false;
  xq_tensor_view v{};
  try {
    v = cp.raw(t);
  } catch (const Error&) {
    return false;
  }
  const uint64_t n = static_cast<uint64_t>(t.shape[0] * t.shape[1]);
  if (!v.data || v.dtype != XQ_DTYPE_F32 || v.nbytes != n * sizeof(float)) return false;
  const auto* u = static_cast<const unsigned char*>(v.data);
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, u + i * sizeof(float), sizeof bits);
    if (bits & 0xFFFFu) return false;
  }
  return true;
}

}  // namespace

TableForm table_form_from_name(const std::string& name) {
  for (TableForm f : {TableForm::kAuto, TableForm::kAsStored, TableForm::kBf16, TableForm::kQ8_0})
    if (strcasecmp(name.c_str(), form_name(f)) == 0) return f;
  fail(XQ_ERR_INVALID_ARGUMENT, "table form must be auto, as-stored, bf16 or q8_0, got '{}'", name);
}

TableForm default_table_form(const Checkpoint& cp) {
  if (cp.quant_format()) return TableForm::kQ8_0;
  for (const TensorEntry& t : cp.tensors())
    if (t.has_quantized || t.dtype == XQ_DTYPE_BLOCKS) return TableForm::kQ8_0;
  return TableForm::kAsStored;
}

void encode_q8_0_rows(const float* x, int64_t rows, int64_t cols, uint8_t* out) {
  const int64_t blocks = cols / kQ8Block;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < blocks; ++b)
      encode_q8_0_block(x + r * cols + b * kQ8Block, out + (r * blocks + b) * kQ8Bytes);
}

// Streams tensor `t` ([rows, cols], a float dtype) as F32 rows, kPartRows at
// a time, into `each(first_row, n, rows_f32)`; the mapped pages of each part
// are given back once it is converted, so the whole table is never resident.
void Model::for_table_parts(const TensorEntry& t, const std::function<void(int64_t, int64_t, const float*)>& each) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const uint64_t esize = dtype_size(t.dtype);
  xq_tensor_view v{};
  try {
    v = checkpoint_->raw(t);
  } catch (const Error&) {
  }
  std::vector<float> part;
  if (!v.data || v.dtype != t.dtype || v.nbytes != static_cast<uint64_t>(rows * cols) * esize) {
    part = checkpoint_->read_f32(t);  // no view to stream from: read whole
    each(0, rows, part.data());
    release_source(t);
    return;
  }
  part.resize(static_cast<size_t>(std::min(rows, kPartRows) * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += kPartRows) {
    const int64_t n = std::min(kPartRows, rows - r0);
    const auto* src = static_cast<const unsigned char*>(v.data) + static_cast<uint64_t>(r0 * cols) * esize;
    convert_to_f32(t.dtype, src, part.data(), static_cast<size_t>(n * cols));
    each(r0, n, part.data());
    page_out_range(src, static_cast<uint64_t>(n * cols) * esize);
  }
  // The pages two parts share, and the count: every whole page of the
  // tensor once, as for any released tensor.
  release_source(t);
}

// The bytes of a [rows, cols] table as Q8_0 blocks (cols a whole number of blocks).
static uint64_t q8_0_bytes(const TensorEntry& t) {
  return static_cast<uint64_t>(t.shape[0]) * static_cast<uint64_t>(t.shape[1] / kQ8Block * kQ8Bytes);
}

// The table's rows as Q8_0 blocks in `store`, prepared by the provider;
// null (store cleared) when the provider does not run them or cols is not a
// whole number of blocks; store is also cleared when the provider holds its
// own copy of the blocks (Kernels::borrows).
xq_qweight* Model::q8_0_table(const TensorEntry& t, std::vector<uint8_t>& store) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  if (cols % kQ8Block != 0) return nullptr;
  const uint64_t row_bytes = static_cast<uint64_t>(cols / kQ8Block * kQ8Bytes);
  store.assign(row_bytes * static_cast<uint64_t>(rows), 0);
  for_table_parts(t, [&](int64_t r0, int64_t n, const float* x) {
    encode_q8_0_rows(x, n, cols, store.data() + row_bytes * static_cast<uint64_t>(r0));
  });
  xq_block_tensor b;
  std::memset(&b, 0, sizeof b);
  b.struct_size = sizeof b;
  b.family = XQ_BLOCKS_GGML;
  b.type = kGgmlQ8_0;
  b.rows = rows;
  b.cols = cols;
  b.row_bytes = row_bytes;
  b.data = store.data();
  b.flags = XQ_BLOCKS_DISPOSABLE;  // ours alone: a provider that copies it may drop the pages it copied
  xq_qweight* q = kernels_->prepare_blocks({b}, t.name);
  if (!q) {
    // The provider runs no Q8_0 blocks: the table is read again as before
    // (its pages fault back in from the file).
    store = {};
    return nullptr;
  }
  logger().debug("'{}': {} table held as Q8_0 blocks ({} bytes)", t.name, dtype_name(t.dtype), store.size());
  // A provider that keeps its own copy of the blocks (the cpu provider's
  // interleaved decode copy, qgemv_rows8.hpp) no longer reads ours.
  if (!kernels_->borrows(q)) store = {};
  return q;
}

std::vector<uint16_t> Model::bf16_table(const TensorEntry& t) {
  const int64_t cols = t.shape[1];
  std::vector<uint16_t> out(static_cast<size_t>(t.shape[0] * cols));
  for_table_parts(t, [&](int64_t r0, int64_t n, const float* x) {
    uint16_t* dst = out.data() + r0 * cols;
    for (int64_t i = 0; i < n * cols; ++i) dst[i] = sdk::f32_to_bf16(x[i]);
  });
  return out;
}

bool Model::bf16_weights_run(int64_t rows, int64_t cols, xq_dtype t) const {
  float* const probe = support_probe();
  xq_op op = Kernels::op(XQ_OP_MATMUL);
  op.src[0] = f32({1, cols}, probe);
  op.src[1] = dtensor(t, {rows, cols}, probe);
  op.dst = f32({1, rows}, probe);
  return kernels_->supports(op);
}

bool Model::compact_embedding(const TensorEntry& et) {
  const TableForm form = options_.tables;
  if (on_device() || options_.dequantize_all || !is_float(et.dtype)) return false;
  const bool exact_bf16 = form == TableForm::kAsStored && f32_values_are_bf16(*checkpoint_, et);
  if (form == TableForm::kAsStored && !exact_bf16) return false;
  if (form == TableForm::kBf16 || exact_bf16) {
    if (et.dtype == XQ_DTYPE_BF16) return false;  // kept as stored (bf16_embedding.cpp)
    static const int32_t probe_id[1] = {0};
    float* const probe = support_probe();
    xq_op rows = Kernels::op(XQ_OP_GET_ROWS);
    rows.src[0] = dtensor(XQ_DTYPE_BF16, {arch_.vocab, arch_.hidden}, probe);
    rows.src[1] = dtensor(XQ_DTYPE_I32, {1}, probe_id);
    rows.dst = f32({1, arch_.hidden}, probe);
    if (!kernels_->supports(rows) || !bf16_weights_run(arch_.vocab, arch_.hidden, XQ_DTYPE_BF16)) return false;
    embed_bf16_ = bf16_table(et);
    return true;
  }
  xq_qweight* q = q8_0_table(et, embed_blocks_);
  if (!q) return false;
  float* const probe = support_probe();
  static const int32_t probe_id[1] = {0};
  xq_op op = Kernels::op(XQ_OP_GET_ROWS);
  op.qweight = q;
  op.src[1] = dtensor(XQ_DTYPE_I32, {1}, probe_id);
  op.dst = f32({1, arch_.hidden}, probe);
  if (!kernels_->supports(op)) {
    kernels_->release(q);
    embed_blocks_ = {};
    fail(XQ_ERR_UNSUPPORTED, "kernel provider '{}' prepared the Q8_0 embedding of '{}' but runs no GET_ROWS on it",
         kernels_->name(), checkpoint_->path().string());
  }
  embed_q_ = q;
  embed_bytes_ = q8_0_bytes(et);
  return true;
}

bool Model::compact_lm_head(const LinearDesc& d) {
  const TensorEntry* te = checkpoint_->find(d.weight_name());
  if (on_device() || options_.dequantize_all || !te || !is_float(te->dtype) || te->has_quantized) return false;
  if (te->shape.size() != 2 || te->shape[0] != d.out || te->shape[1] != d.in || checkpoint_->read_module(d.module))
    return false;
  const TableForm form = options_.tables;
  LinearWeights lw;
  lw.desc = &d;
  if (form == TableForm::kQ8_0) {
    lw.q = q8_0_table(*te, lm_head_blocks_);
    if (!lw.q) return false;
    if (!choose_qmatmul_act(lw)) {
      kernels_->release(lw.q);
      lm_head_blocks_ = {};
      return false;
    }
    lw.layout = kernels_->layout(lw.q);
    lw.bytes = q8_0_bytes(*te);
  } else {
    // As stored: a BF16 or F16 tensor kept in its own dtype (exact); the
    // bf16 form rounds F32 and F16.
    const bool keep16 = form == TableForm::kAsStored && (te->dtype == XQ_DTYPE_BF16 || te->dtype == XQ_DTYPE_F16);
    const bool exact_bf16 = form == TableForm::kAsStored && f32_values_are_bf16(*checkpoint_, *te);
    const xq_dtype t = keep16 ? te->dtype : XQ_DTYPE_BF16;
    if ((!keep16 && !exact_bf16 && form != TableForm::kBf16) || !bf16_weights_run(d.out, d.in, t)) return false;
    if (keep16) {
      lw.w16.resize(static_cast<size_t>(d.out * d.in));
      load_stats_.source_bytes_released +=
          read_and_release(*checkpoint_, *te, t, lw.w16.data(), lw.w16.size() * sizeof(uint16_t));
      lw.layout = std::string(t == XQ_DTYPE_F16 ? "f16" : "bf16") + " (as stored)";
    } else {
      lw.w16 = bf16_table(*te);
      lw.layout = exact_bf16                    ? "bf16 (F32 on the BF16 grid)"
                  : te->dtype == XQ_DTYPE_BF16 ? "bf16 (as stored)"
                                               : std::string("bf16 (rounded from ") + dtype_name(te->dtype) + ")";
    }
    lw.w16_dtype = t;
    lw.bytes = lw.w16.size() * sizeof(uint16_t);
  }
  logger().debug("lm_head held as {} ({} form)", lw.layout, form_name(form));
  lm_head_ = std::move(lw);
  return true;
}

}  // namespace xquant
