/* xq_tensor.h: the two tensor shapes that cross the ABI.
 *
 * xq_tensor_view: a borrowed dense tensor (row-major, contiguous).
 * xq_quant_tensor: the canonical quantized tensor, the lingua franca between
 * algorithms (produce it), formats (pack/unpack it) and kernel providers
 * (consume it or pre-pack it into their own layout).
 */
#ifndef XQUANT_XQ_TENSOR_H
#define XQUANT_XQ_TENSOR_H

#include "xq_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A dense, row-major, contiguous tensor. shape[] is slowest-first (PyTorch
 * order): a Linear weight is [out, in]. Borrowed unless a call says otherwise. */
typedef struct xq_tensor_view {
  uint32_t struct_size;
  xq_dtype dtype;
  uint32_t ndim;
  uint32_t reserved;
  int64_t shape[XQ_MAX_DIMS];
  void* data;      /* const for inputs; writable where a call says so */
  uint64_t nbytes; /* of data */
} xq_tensor_view;

/* How scales are shared: one per tensor, per output channel (row), per group
 * of input columns, per block, the word compressed-tensors and llm-compressor
 * recipes use ("strategy"). Named xq_granularity / XQ_GRAN_* in earlier headers
 * (same values, same struct offsets). */
typedef enum xq_strategy {
  XQ_STRATEGY_TENSOR = 1,  /* one scale for the whole tensor */
  XQ_STRATEGY_CHANNEL = 2, /* one scale per output row */
  XQ_STRATEGY_GROUP = 3,   /* per row, per `group_size` consecutive input columns;
                          the last group of a row may be shorter (ragged) */
  XQ_STRATEGY_BLOCK = 4    /* 2-D tiles; reserved, no plugin of 1.0 produces it */
} xq_strategy;

typedef enum xq_act_scheme {
  XQ_ACT_NONE = 0,          /* weight-only (e.g. W4A16) */
  XQ_ACT_STATIC_TENSOR = 1, /* activations quantized with input_scale */
  XQ_ACT_DYNAMIC_TOKEN = 2  /* activations quantized per row at run time */
} xq_act_scheme;

/* The canonical quantized weight of one Linear, logical shape [rows=out,
 * cols=in]. Dequantized value:
 *     w[r][c] = (codes[r][c] - zp[r][g]) * scales[r][g],  g = group of c
 * with g = g_idx[c] when g_idx is set, else c / group_size (0 for TENSOR and
 * CHANNEL). For TENSOR strategy scales/zero_points hold one element, for
 * the others rows * n_groups elements, row-major.
 *
 * Codes are always signed: [-2^(bits-1), 2^(bits-1)-1], one int8 per
 * element, unpacked. Zero points live in the same signed domain (an unsigned
 * AWQ zero z in [0, 2^bits) is z - 2^(bits-1) here); NULL for symmetric.
 * Scales hold values already representable in `scale_dtype` (the dtype a
 * format stores them in), so a write/read round trip is exact.
 *
 * Ownership: when a plugin fills this as an output, every buffer comes from
 * host->alloc and the host frees it. When it is an input it is borrowed. */
typedef struct xq_quant_tensor {
  uint32_t struct_size;
  uint32_t bits;      /* 2..8 (integer codes) or XQ_BITS_F8_E4M3 (float codes, below) */
  uint32_t symmetric; /* 1: zero_points is NULL */
  xq_strategy strategy;
  int64_t rows;
  int64_t cols;
  int64_t group_size; /* GROUP: columns per group; CHANNEL/TENSOR: cols */
  int64_t n_groups;   /* per row: ceil(cols / group_size); 1 for CHANNEL/TENSOR */
  int8_t* codes;       /* [rows * cols] */
  float* scales;       /* [rows * n_groups], or [1] for TENSOR */
  int8_t* zero_points; /* same count as scales, or NULL */
  int32_t* g_idx;      /* [cols] (act-order) or NULL */
  xq_dtype scale_dtype;        /* F32, F16 or BF16 */
  xq_act_scheme act_scheme;    /* how activations feeding this Linear are quantized */
  uint32_t act_bits;           /* 8 (int8) or XQ_BITS_F8_E4M3 when act_scheme != NONE */
  float input_scale;           /* XQ_ACT_STATIC_TENSOR: activation scale */
} xq_quant_tensor;

/* Float codes (an addition to 1.0 that needs no new field: a new field would
 * move xq_linear_output.rel_error, which embeds this struct by value).
 *
 * `bits` (and xq_quant_scheme.bits, and act_bits) carry the code format in
 * their second byte: 0 for the signed integer codes above, else the xq_dtype
 * of the float codes, with the code width in the low byte. A reader built
 * before float codes existed sees bits > 8 and refuses the tensor instead of
 * misreading float bytes as integers.
 *
 * XQ_BITS_F8_E4M3: codes[] holds OCP FP8 E4M3FN bytes (torch.float8_e4m3fn:
 * 1 sign, 4 exponent bits with bias 7, 3 mantissa bits; largest finite 448;
 * no infinities; 0x7f and 0xff are NaN), one byte per element. Symmetric
 * (zero_points NULL), no g_idx, TENSOR or CHANNEL strategy:
 *     w[r][c] = e4m3_value(codes[r][c]) * scales[r or 0]
 * With act_scheme XQ_ACT_DYNAMIC_TOKEN and act_bits XQ_BITS_F8_E4M3 the
 * Linear's input rows are quantized to E4M3 at run time with the scale
 * max|x_row| / 448 (FP8 W8A8 dynamic, compressed-tensors FP8_DYNAMIC). */
#define XQ_CODE_WIDTH(bits) ((uint32_t)(bits)&0xFFu)
#define XQ_CODE_DTYPE(bits) ((xq_dtype)(((uint32_t)(bits) >> 8) & 0xFFu))
#define XQ_FLOAT_CODE_BITS(dtype, width) ((((uint32_t)(dtype)) << 8) | (uint32_t)(width))
#define XQ_BITS_F8_E4M3 XQ_FLOAT_CODE_BITS(XQ_DTYPE_F8_E4M3, 8) /* 0x0E08 */

/* A weight stored in a foreign block-quantized layout, handed through as the
 * file holds it instead of being converted (appended in 1.0; see docs/abi.md).
 * family XQ_BLOCKS_GGML: `type` is ggml's `enum ggml_type` id (ggml.h: 2 =
 * Q4_0, 3 = Q4_1, 6 = Q5_0, 7 = Q5_1, 8 = Q8_0, 12 = Q4_K, 13 = Q5_K, 14 =
 * Q6_K), each row is cols / block elements stored as ggml's block_* structs
 * (ggml-common.h), `row_bytes` apart, rows in canonical (HF) order.
 * Logical shape [rows=out, cols=in], cols a multiple of the block size.
 *
 * Ownership: borrowed. A provider that keeps `data` (the cpu provider runs
 * the bytes in place, e.g. from the loader's read-only mmap) may read it
 * until qweight_release; the caller keeps it alive that long, or frees it
 * once xq_kernel_vtable.qweight_borrows answers 0.
 *
 * `flags` (was `reserved`, always 0 before; 0 = none):
 * XQ_BLOCKS_DISPOSABLE: `data` is the caller's scratch copy (anonymous
 * memory it neither reads nor writes after prepare): the provider may
 * discard the pages of bytes it has copied and will not read again
 * (madvise MADV_DONTNEED), so a copy and its source are not resident
 * together. A provider that ignores the flag leaves the bytes as they are. */
typedef enum xq_block_family { XQ_BLOCKS_GGML = 1 } xq_block_family;
#define XQ_BLOCKS_DISPOSABLE 1u

typedef struct xq_block_tensor {
  uint32_t struct_size;
  uint32_t family; /* xq_block_family */
  uint32_t type;   /* family's type id */
  uint32_t flags;  /* XQ_BLOCKS_* */
  int64_t rows;
  int64_t cols;
  uint64_t row_bytes;
  const void* data; /* rows * row_bytes bytes */
} xq_block_tensor;

#ifdef __cplusplus
} /* extern "C" */
#endif

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
XQ_STATIC_ASSERT(offsetof(xq_tensor_view, shape) == 16, "xq_tensor_view.shape moved");
XQ_STATIC_ASSERT(offsetof(xq_tensor_view, data) == 80, "xq_tensor_view.data moved");
XQ_STATIC_ASSERT(sizeof(xq_tensor_view) == 96, "xq_tensor_view size changed");
XQ_STATIC_ASSERT(offsetof(xq_quant_tensor, rows) == 16, "xq_quant_tensor.rows moved");
XQ_STATIC_ASSERT(offsetof(xq_quant_tensor, codes) == 48, "xq_quant_tensor.codes moved");
XQ_STATIC_ASSERT(offsetof(xq_quant_tensor, g_idx) == 72, "xq_quant_tensor.g_idx moved");
XQ_STATIC_ASSERT(offsetof(xq_quant_tensor, scale_dtype) == 80, "xq_quant_tensor.scale_dtype moved");
XQ_STATIC_ASSERT(offsetof(xq_quant_tensor, input_scale) == 92, "xq_quant_tensor.input_scale moved");
XQ_STATIC_ASSERT(offsetof(xq_block_tensor, rows) == 16, "xq_block_tensor.rows moved");
XQ_STATIC_ASSERT(offsetof(xq_block_tensor, data) == 40, "xq_block_tensor.data moved");
#endif

XQ_STATIC_ASSERT(XQ_BITS_F8_E4M3 == 0x0E08u, "XQ_BITS_F8_E4M3 changed");

#endif /* XQUANT_XQ_TENSOR_H */
