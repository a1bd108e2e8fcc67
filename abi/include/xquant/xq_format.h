/* xq_format.h: format plugins convert between canonical quantized tensors
 * and what a checkpoint stores (tensors + quantization config).
 *
 * Writing is whole-checkpoint and streaming: open, add tensors one at a time
 * in any order, finish (atomic: temporary names, fsync, rename) or abort
 * (removes everything written). Reading is per module over an already-open
 * checkpoint (the loader supplies the stored tensors through xq_tensor_source).
 */
#ifndef XQUANT_XQ_FORMAT_H
#define XQUANT_XQ_FORMAT_H

#include "xq_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Host-provided lookup of stored tensors of an open checkpoint. */
typedef struct xq_tensor_source {
  uint32_t struct_size;
  uint32_t reserved;
  void* ctx;
  /* Borrowed view of the stored tensor `name` (valid while the checkpoint
   * is open); XQ_ERR_NOT_FOUND when absent. */
  xq_status (*find)(void* ctx, const char* name, xq_tensor_view* out);
} xq_tensor_source;

typedef struct xq_writer_options {
  uint32_t struct_size;
  uint32_t reserved;
  const char* out_dir;     /* created if absent; existing files are replaced atomically */
  const char* source_path; /* the input checkpoint (companion files are copied from it) */
  const xq_kv* model_config; /* canonical keys from the loader */
  const xq_kv* params;       /* this plugin's validated params */
  /* NULL-terminated list of Linear module names left unquantized on purpose
   * (the pipeline's ignore list resolved against the model). */
  const char* const* ignored_modules;
  /* Appended in ABI 1.0 (check XQ_HAS_FIELD; may be NULL): the pipeline YAML
   * this checkpoint is quantized by, for formats that store their recipe. */
  const char* recipe_yaml;
} xq_writer_options;

typedef struct xq_format_vtable {
  uint32_t struct_size;
  uint32_t reserved;
  /* Writing. */
  xq_status (*writer_open)(void* state, const xq_writer_options* options, void** out_writer);
  /* A tensor kept as is (norms, embeddings, ignored Linears). */
  xq_status (*writer_add_dense)(void* writer, const char* name, const xq_tensor_view* tensor);
  /* A quantized Linear; `module` is the module name without ".weight". */
  xq_status (*writer_add_quantized)(void* writer, const char* module, const xq_quant_tensor* q);
  /* Writes the config, makes every file durable and visible; frees writer. */
  xq_status (*writer_finish)(void* writer);
  /* Removes every temporary file; frees writer. Accepts NULL. */
  void (*writer_abort)(void* writer);

  /* Reading. 0 = this checkpoint (by its configuration, e.g. config.json's
   * quantization_config in "quantization_config" raw JSON) is not in this
   * format; otherwise confidence 1..100. */
  uint32_t (*detect)(void* state, const xq_kv* model_config);
  /* The canonical tensor of `module` (buffers from host->alloc);
   * XQ_ERR_NOT_FOUND when the module is stored unquantized. */
  xq_status (*read_module)(void* state, const xq_kv* model_config, const xq_tensor_source* source,
                           const char* module, xq_quant_tensor* out);
  /* Appended in ABI 1.0 (check XQ_HAS_FIELD; may be NULL): the run's
   * quantization report (JSON, borrowed for the call), given at most once,
   * after the last tensor and before writer_finish, for formats that store
   * it (xq: the manifest's report_json). */
  xq_status (*writer_set_report)(void* writer, const char* report_json);
  /* Appended in ABI 1.0 (check XQ_HAS_FIELD; may be NULL): the calibration
   * statistic of the input of Linear `module`, given before that module's
   * writer_add_quantized: sum_sq[c] = sum of x_c^2 over the `tokens`
   * calibration tokens that reached input column c (n_cols values, the
   * input as the stored weight sees it, after any rescaling an algorithm
   * folded into the weight). Formats that requantize weight their error by
   * it (gguf: llama.cpp's importance matrix); NULL for formats that do not
   * (the host then skips the call and need not collect the statistic). */
  xq_status (*writer_set_importance)(void* writer, const char* module, const float* sum_sq, int64_t n_cols,
                                     uint64_t tokens);
} xq_format_vtable;

#ifdef __cplusplus
}
#endif

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
XQ_STATIC_ASSERT(offsetof(xq_tensor_source, find) == 16, "tensor_source.find moved");
XQ_STATIC_ASSERT(offsetof(xq_writer_options, ignored_modules) == 40, "writer_options.ignored_modules moved");
XQ_STATIC_ASSERT(offsetof(xq_writer_options, recipe_yaml) == 48, "writer_options.recipe_yaml moved");
XQ_STATIC_ASSERT(offsetof(xq_format_vtable, writer_open) == 8, "format.writer_open moved");
XQ_STATIC_ASSERT(offsetof(xq_format_vtable, read_module) == 56, "format.read_module moved");
XQ_STATIC_ASSERT(offsetof(xq_format_vtable, writer_set_report) == 64, "format.writer_set_report moved");
XQ_STATIC_ASSERT(offsetof(xq_format_vtable, writer_set_importance) == 72, "format.writer_set_importance moved");
#endif

#endif /* XQUANT_XQ_FORMAT_H */
