/* xq_loader.h: loader plugins open a checkpoint and expose its configuration
 * and tensor catalog with lazy (mmap) reads.
 *
 * Canonical naming: whatever the file calls things, a loader reports Hugging
 * Face names ("model.layers.0.self_attn.q_proj.weight") with HF row order
 * (Q/K rows in the half-split RoPE order) and fills the model configuration
 * with the canonical keys of docs/abi.md ("architecture", "hidden_size",
 * "num_hidden_layers", "tokenizer.tokens", ...). So the engine, algorithms
 * and writers see one model whatever format it came from.
 */
#ifndef XQUANT_XQ_LOADER_H
#define XQUANT_XQ_LOADER_H

#include "xq_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct xq_tensor_info {
  uint32_t struct_size;
  xq_dtype dtype; /* stored element type; XQ_DTYPE_BLOCKS for block formats */
  uint32_t ndim;
  uint32_t reserved;
  int64_t shape[XQ_MAX_DIMS];    /* logical shape, slowest first */
  const char* name;              /* canonical name; valid while the model is open */
  uint64_t nbytes;               /* stored bytes */
  const char* storage_type_name; /* the file's own type name, e.g. "BF16", "Q4_K" */
  uint32_t has_quantized;        /* read_quantized can return this tensor */
  uint32_t reserved2;
} xq_tensor_info;

typedef struct xq_loader_vtable {
  uint32_t struct_size;
  uint32_t reserved;
  /* 0 = not this loader's; otherwise a confidence 1..100. Cheap: reads at
   * most a header. Never fails. */
  uint32_t (*probe)(void* state, const char* path);
  /* Opens and validates the container (headers, offsets, sizes). */
  xq_status (*open)(void* state, const char* path, void** out_model);
  void (*close)(void* model); /* accepts NULL */
  /* Adds the canonical configuration keys (and tokenizer vocabulary when the
   * checkpoint has one) to the host-owned `out`. */
  xq_status (*config)(void* model, xq_kv* out);
  uint64_t (*tensor_count)(void* model);
  xq_status (*tensor_info)(void* model, uint64_t index, xq_tensor_info* out);
  /* Converts tensor `index` to `dtype` (F32 always supported; F16/BF16 when
   * the loader says so) into caller memory of `dst_nbytes`. */
  xq_status (*read)(void* model, uint64_t index, xq_dtype dtype, void* dst, uint64_t dst_nbytes);
  /* A borrowed view of the stored bytes (usually the mmap), valid while the
   * model is open; dtype/shape as tensor_info. Lets writers copy tensors
   * they do not change without converting them. */
  xq_status (*raw)(void* model, uint64_t index, xq_tensor_view* out);
  /* Optional (may be NULL): the tensor as a canonical quantized tensor, for
   * stored formats that are block-quantized (GGUF Q8_0/Q4_0/Q4_1). Buffers
   * come from host->alloc. XQ_ERR_UNSUPPORTED when has_quantized is 0. */
  xq_status (*read_quantized)(void* model, uint64_t index, xq_quant_tensor* out);
  /* Appended in ABI 1.0 (check XQ_HAS_FIELD; may be NULL): for containers
   * that store a quantized tensor already packed in a kernel provider's
   * layout (the `xq` container). Fills `desc` with the tensor's canonical
   * description (every field but the buffers codes/scales/zero_points/g_idx,
   * which stay NULL) and `out` with a borrowed U8 view of its bytes in
   * provider layout `layout` (e.g. "cpu.int-blocks.v1"), valid while the
   * model is open. XQ_ERR_NOT_FOUND when the file stores no such layout for
   * this tensor. */
  xq_status (*read_packed)(void* model, uint64_t index, const char* layout, xq_quant_tensor* desc,
                           xq_tensor_view* out);
} xq_loader_vtable;

#ifdef __cplusplus
}
#endif

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
XQ_STATIC_ASSERT(offsetof(xq_tensor_info, name) == 80, "xq_tensor_info.name moved");
XQ_STATIC_ASSERT(offsetof(xq_tensor_info, has_quantized) == 104, "xq_tensor_info.has_quantized moved");
XQ_STATIC_ASSERT(offsetof(xq_loader_vtable, probe) == 8, "loader.probe moved");
XQ_STATIC_ASSERT(offsetof(xq_loader_vtable, read_quantized) == 72, "loader.read_quantized moved");
XQ_STATIC_ASSERT(offsetof(xq_loader_vtable, read_packed) == 80, "loader.read_packed moved");
#endif

#endif /* XQUANT_XQ_LOADER_H */
