/* xq_algorithm.h: algorithm plugins turn one layer group's float weights
 * (plus calibration statistics when they asked for them) into canonical
 * quantized tensors.
 *
 * The host walks the model sequentially, one layer group at a time (a group
 * is the set of Linears that share an input, e.g. q/k/v after the input norm,
 * or a single Linear), gathers what the algorithm's `needs` bits request, and
 * calls `quantize`. Algorithms that rescale (SmoothQuant, AWQ) may also write
 * the preceding norm's weight and the float weights they were given.
 */
#ifndef XQUANT_XQ_ALGORITHM_H
#define XQUANT_XQ_ALGORITHM_H

#include "xq_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The weight scheme a pipeline rule asks for. */
typedef struct xq_quant_scheme {
  uint32_t struct_size;
  uint32_t bits;      /* 2..8, or XQ_BITS_F8_E4M3 for FP8 codes (xq_tensor.h) */
  uint32_t symmetric; /* 1 symmetric, 0 asymmetric (zero points) */
  xq_strategy strategy;
  int64_t group_size; /* GROUP only; the last group of a row may be ragged */
  xq_dtype scale_dtype; /* the checkpoint's dtype for scales: F32/F16/BF16 */
  xq_act_scheme act_scheme;
  uint32_t act_bits;
  uint32_t reserved;
} xq_quant_scheme;

/* Calibration statistics over the Linear's input columns; each pointer is
 * NULL unless its XQ_NEED_ bit was requested. `cols` is the input width. */
typedef struct xq_linear_stats {
  uint32_t struct_size;
  uint32_t reserved;
  int64_t cols;
  uint64_t tokens;       /* calibration rows seen */
  const float* absmax;   /* [cols] max |x| */
  const float* mean_abs; /* [cols] mean |x| */
  const float* sum_sq;   /* [cols] sum x^2 (imatrix) */
  const float* hessian;  /* [cols*cols] X^T X, row-major */
  const float* samples;  /* [n_samples * cols] sampled input rows */
  int64_t n_samples;
} xq_linear_stats;

enum {
  XQ_NEED_ABSMAX = 1u << 0,
  XQ_NEED_MEAN_ABS = 1u << 1,
  XQ_NEED_SUM_SQ = 1u << 2,
  XQ_NEED_HESSIAN = 1u << 3,
  XQ_NEED_SAMPLES = 1u << 4
};

typedef struct xq_linear_input {
  uint32_t struct_size;
  uint32_t reserved;
  const char* name;      /* module name, e.g. "model.layers.0.mlp.down_proj" */
  xq_tensor_view weight; /* F32 [out, in], writable (rescaling algorithms) */
  xq_tensor_view bias;   /* F32 [out] or data == NULL */
  const xq_linear_stats* stats; /* NULL without calibration */
  xq_quant_scheme scheme;
} xq_linear_input;

typedef struct xq_linear_output {
  uint32_t struct_size;
  uint32_t reserved;
  xq_quant_tensor quant; /* filled by the plugin; buffers from host->alloc */
  double rel_error;      /* ||W - W_hat||_F / ||W||_F over the original W */
} xq_linear_output;

/* Lets an algorithm run the module a group feeds, to measure the module's
 * output error (AWQ compares the whole self_attn or mlp block) on the
 * group's calibration inputs. Provided by the host when the pipeline has
 * calibration data; NULL otherwise. */
typedef struct xq_group_forward {
  uint32_t struct_size;
  uint32_t reserved;
  void* ctx;
  int64_t n_tokens;     /* calibration rows the module runs on */
  int64_t in_features;  /* width of the group's shared input */
  int64_t out_features; /* width of the compared module's output */
  const float* input;   /* [n_tokens, in_features]: the linears' shared input */
  /* Runs the compared module with linear i's weight replaced by weights[i]
   * (F32, same shape as linears[i].weight; NULL keeps the current one) and
   * writes its output [n_tokens, out_features] to `out`. */
  xq_status (*run)(void* ctx, const float* const* weights, float* out);
} xq_group_forward;

typedef struct xq_layer_group {
  uint32_t struct_size;
  uint32_t reserved;
  const char* name;      /* e.g. "model.layers.0.attn_in" */
  uint64_t n_linears;
  xq_linear_input* linears;
  /* The weight of the op whose output feeds all linears, writable, so a
   * rescaling algorithm can fold 1/s into it: the preceding RMSNorm's F32
   * [in], or the previous Linear's F32 [in, prev_in] rows (v_proj before
   * o_proj, up_proj before down_proj); data == NULL when there is none.
   * (Called prev_norm in earlier headers; same field, same offset.) */
  xq_tensor_view prev_op;
  /* What this group is, for algorithms with per-role rules (AWQ skips the
   * clip search on q/k): "attn_qkv", "attn_o", "mlp_gate_up", "mlp_down",
   * or "linear" for a lone Linear. */
  const char* role;
  const xq_group_forward* forward; /* NULL without calibration */
} xq_layer_group;

typedef struct xq_algorithm_vtable {
  uint32_t struct_size;
  uint32_t reserved;
  /* XQ_NEED_* bits for these params; 0 = data-free (no calibration). */
  uint32_t (*needs)(void* state, const xq_kv* params);
  /* Quantizes every linear of `group` into outs[i] (n_linears entries,
   * struct_size preset by the host). On failure the host frees whatever
   * buffers were already attached to outs.
   * A transform-only algorithm (SmoothQuant before another quantizer)
   * rescales linears[i].weight / prev_op in place and leaves
   * outs[i].quant.codes NULL; the host then hands the rescaled weights to
   * the next algorithm of the rule. */
  xq_status (*quantize)(void* state, const xq_kv* params, xq_layer_group* group,
                        xq_linear_output* outs);
} xq_algorithm_vtable;

#ifdef __cplusplus
}
#endif

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
XQ_STATIC_ASSERT(offsetof(xq_quant_scheme, group_size) == 16, "scheme.group_size moved");
XQ_STATIC_ASSERT(offsetof(xq_linear_stats, hessian) == 48, "stats.hessian moved");
XQ_STATIC_ASSERT(offsetof(xq_linear_input, weight) == 16, "linear_input.weight moved");
XQ_STATIC_ASSERT(offsetof(xq_linear_input, stats) == 208, "linear_input.stats moved");
XQ_STATIC_ASSERT(offsetof(xq_linear_output, rel_error) == 104, "linear_output.rel_error moved");
XQ_STATIC_ASSERT(offsetof(xq_layer_group, linears) == 24, "layer_group.linears moved");
XQ_STATIC_ASSERT(offsetof(xq_layer_group, prev_op) == 32, "layer_group.prev_op moved");
XQ_STATIC_ASSERT(offsetof(xq_layer_group, role) == 128, "layer_group.role moved");
XQ_STATIC_ASSERT(offsetof(xq_group_forward, run) == 48, "group_forward.run moved");
XQ_STATIC_ASSERT(offsetof(xq_algorithm_vtable, quantize) == 16, "algorithm.quantize moved");
#endif

#endif /* XQUANT_XQ_ALGORITHM_H */
