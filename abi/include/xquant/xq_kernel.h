/* xq_kernel.h: kernel providers are devices. A provider owns memory on its
 * device, runs the ops the engine needs, and executes quantized weights in
 * the layouts it advertises. The engine asks `supports_op` before it
 * dispatches (as ggml's supports_op) and falls back (dequantize-on-load, or
 * another provider) otherwise.
 *
 * Conventions: all tensors are row-major; shape[] slowest first; strides in
 * elements (0 = contiguous). A Linear is y[M,N] = x[M,K] · W[N,K]^T (+ bias).
 */
#ifndef XQUANT_XQ_KERNEL_H
#define XQUANT_XQ_KERNEL_H

#include "xq_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor in the provider's memory (for the CPU provider, host memory). */
typedef struct xq_device_tensor {
  uint32_t struct_size;
  xq_dtype dtype;
  uint32_t ndim;
  uint32_t reserved;
  int64_t shape[4];
  int64_t strides[4]; /* elements; all zero = contiguous */
  void* data;         /* device pointer */
} xq_device_tensor;

/* What memory_info reports (bytes). */
typedef struct xq_memory_info {
  uint32_t struct_size;
  uint32_t reserved;
  uint64_t device_free, device_total, in_use, peak;
} xq_memory_info;

/* A quantized weight prepared (packed) by a provider in its native layout. */
typedef struct xq_qweight xq_qweight;

/* A recorded sequence of ops a provider can launch again as one unit (on
 * CUDA, an instantiated CUDA graph). Opaque to the host. */
typedef struct xq_graph xq_graph;

typedef enum xq_op_type {
  /* dst[M,N] = src[0][M,K] · src[1][N,K]^T (+ src[2][N] bias if data != NULL) */
  XQ_OP_MATMUL = 1,
  /* dst[M,N] = act(src[0][M,K]) · dequant(qweight)^T (+ src[2] bias); the
   * activation quantization of the qweight's act_scheme is applied. */
  XQ_OP_QMATMUL = 2,
  /* dst[N,K] (F32/BF16/F16) = dequant(qweight) */
  XQ_OP_DEQUANTIZE = 3,
  /* dst[M,D] = src[0][M,D] / sqrt(mean(src0^2) + f[0]) * src[1][D] */
  XQ_OP_RMS_NORM = 4,
  /* in place on src[0] = dst: [T, H, D] rotated at positions src[1] (I32 [T]);
   * i[0] = pairing (0 = half-split "neox", 1 = adjacent "norm"), i[1] =
   * rotary dims, f[0] = theta base, f[1] = position scale (linear scaling);
   * src[2] optional F32 [rot/2] frequency divisors (llama3 rope_freqs). */
  XQ_OP_ROPE = 5,
  /* dst[T, H, D] = softmax(q·k^T * f[0] + causal mask) · v with q = src[0]
   * [T, H, D], k = src[1] [S, KVH, D], v = src[2] [S, KVH, D] (GQA: head h
   * reads kv head h / (H / KVH)); query t sits at absolute position i[0] + t
   * and sees keys 0..i[0]+t. */
  XQ_OP_ATTENTION = 6,
  /* dst = silu(src[0]) * src[1] (elementwise, same shape). A provider may
   * accept 2-D src[0]/src[1] with strides {ld, 1}: the gate and up halves of
   * one fused GEMM output. */
  XQ_OP_SWIGLU = 7,
  /* dst = src[0] + src[1] (elementwise; src[1] may be [N] broadcast on rows) */
  XQ_OP_ADD = 8,
  /* dst[T, D] = src[0][ids, :] with ids = src[1] (I32 [T]); or, when
   * qweight is set and src[0] absent, rows ids of dequant(qweight) (a
   * provider that prepared the embedding table from foreign blocks) */
  XQ_OP_GET_ROWS = 9,
  /* dst = src[0] * src[1] elementwise (src[1] may be [N] broadcast on rows) */
  XQ_OP_MUL = 10,
  /* dst[M,K] I8 + dst2 scales: per-token (i[0]=0) or static (i[0]=1, f[0]
   * scale) activation quantization; dst2 = src[1] F32 [M] */
  XQ_OP_QUANTIZE_ACT = 11,
  /* dst = src[0] converted to dst.dtype. A provider may accept a 2-D src
   * with strides {ld, 1} (ld >= columns): a column slice of a wider matrix. */
  XQ_OP_CONVERT = 12,
  /* src[0] [M, D] += src[2] [M, D] in place (the residual stream), then dst
   * [M, D] = RMS_NORM of the sum with weight src[1] [D] and eps f[0]: the
   * residual add fused into the next norm. */
  XQ_OP_ADD_RMS_NORM = 13,
  /* dst I32 [M] = index of the largest element of each row of src[0] [M, N]
   * (lowest index on ties; NaN never wins): greedy sampling on the device. */
  XQ_OP_ARGMAX = 14,
  /* Paged KV cache (fixed-size blocks of BS token slots, as vLLM's
   * PagedAttention, Kwon et al. 2023, arXiv:2309.06180). A pool is
   * [NB, BS, KVH, D] (F32, or BF16 where the provider accepts it); slot
   * s = block * BS + offset. KV_WRITE: dst pool rows dst[slot[t]] = src[0][t]
   * for t < T, with src[0] [T, KVH * D] (a provider may accept it 2-D with
   * strides {ld, 1}: a column slice of the q|k|v GEMM output) and src[1]
   * I32 [T] slots (a negative slot skips the row). */
  XQ_OP_KV_WRITE = 15,
  /* dst [T, H, D] = softmax(q·k^T * f[0]) · v per query row t, q = src[0] F32
   * [T, H, D], k = src[1] and v = src[2] pools [NB, BS, KVH, D] (GQA as
   * ATTENTION), src[3] I32 [T, 1 + MB]: row t's position p (it sees keys at
   * positions 0..p of its sequence) then that sequence's block table (key
   * position j sits in block table[1 + j / BS], offset j % BS; entries past
   * p / BS are not read). Decode (one row per sequence) and chunked prefill
   * (rows of one sequence at consecutive positions) are the same op. i[0]: optional hint, docs/abi.md.
   * i[1] = n_seq > 0 (appended): src[3] is I32 [2T + n_seq * MB] instead:
   * the T rows' positions, the T rows' sequence indices in [0, n_seq), then
   * n_seq block tables of MB ids (sequence s's at 2T + s * MB). */
  XQ_OP_PAGED_ATTENTION = 16,
  /* Mixture-of-experts routing (transformers' Qwen3MoeTopKRouter,
   * Qwen2MoeSparseMoeBlock, MixtralTopKRouter): per row t of src[0] F32
   * [T, E] router logits, p = softmax(row) in F32, the top_k = dst.shape[1]
   * largest p (descending; the lower expert id first on ties) into dst I32
   * [T, top_k] (expert ids) and src[1] F32 [T, top_k], an output like
   * QUANTIZE_ACT's scales (their combine weights: p divided by the sum of
   * the top_k p when i[0] = 1, norm_topk_prob; p itself when i[0] = 0). */
  XQ_OP_MOE_ROUTE = 17,
  /* Weighted combine of expert output rows into the residual stream: dst F32
   * [T, N] += sum over j < k, in j order, of act(src[1][t, j]) *
   * src[0][r(t, j)], with src[0] F32 [R, N] expert rows, src[1] F32 [T, k]
   * weights, r(t, j) = src[2][t * k + j] (I32 [T * k]: where slot (t, j)'s
   * row sits, e.g. rows sorted by expert) or t * k + j when src[2] is
   * absent; a negative r adds nothing. act = identity (i[0] = 0) or sigmoid
   * (i[0] = 1: Qwen2-MoE's shared_expert_gate logit, k = 1). */
  XQ_OP_MOE_COMBINE = 18,
  /* The tail of a q|k|v GEMM at decode in one op: [q/k RMS norms,] ROPE on
   * q and k, the K/V writes. src[0] [T, (H + 2 KVH) D] q|k|v rows (F32/BF16/
   * F16; a provider may accept strides {ld, 1}); src[1] I32 [T] positions or
   * [2, T]: positions, then the cache row each t writes (paged slots; strides
   * [0] the distance); dst F32 [T, H, D] = q rotated as ROPE (i[0], i[1], f[0],
   * f[1]); src[3] F32 [rot/2] frequency divisors, or [2, D] the q and k norm
   * weights (strides[0] the distance; eps f[2]); src[2] F32 (or BF16) [2, S,
   * KVH, D]: K then V cache (strides[0] from K to V): K/V row pos[t] (or the
   * given row) = k rotated, v; a row outside [0, S) writes none. */
  XQ_OP_ROPE_KV = 19
} xq_op_type;

typedef struct xq_op {
  uint32_t struct_size;
  xq_op_type type;
  xq_device_tensor dst;
  xq_device_tensor src[4]; /* unused slots have data == NULL */
  const xq_qweight* qweight;
  double f[8];
  int64_t i[8];
} xq_op;

/* A mixture-of-experts Linear over all experts at once (moe_qmatmul): for
 * each token t and routing slot j < top_k, the row y(t,j) = x_row · W_e^T
 * with e = expert_ids[t, j] and W_e = experts[e]. The activation row is
 * x[t] when x is [T, K] (the gate|up GEMM: every slot reads its token), or
 * x[t * top_k + j] when x is [T * top_k, K] (the down GEMM: one row per
 * slot). Without weights, dst is [T * top_k, N] and row t * top_k + j holds
 * y(t,j). With weights (F32 [T, top_k], the router's normalised top-k
 * probabilities), dst is [T, N] and row t = sum_j weights[t, j] * y(t,j),
 * summed in slot order. A slot whose id is outside [0, n_experts) adds
 * nothing (combine) or leaves its row unwritten. All experts share one
 * layout, one N and one K; activations and dst follow QMATMUL's dtypes for
 * that layout. Tensors are device tensors of the provider; `experts` is a
 * host array of n_experts prepared weights. */
typedef struct xq_moe_op {
  uint32_t struct_size;
  uint32_t n_experts;
  uint32_t top_k;
  uint32_t reserved;
  const xq_qweight* const* experts;
  xq_device_tensor x;          /* [T, K] or [T * top_k, K] */
  xq_device_tensor expert_ids; /* I32 [T, top_k] */
  xq_device_tensor weights;    /* F32 [T, top_k] or data == NULL */
  xq_device_tensor dst;        /* [T, N] with weights, else [T * top_k, N] */
  int64_t i[4];                /* provider knobs; 0 = default */
  /* Appended in ABI 1.0 (check XQ_HAS_FIELD): dense (unquantized) experts.
   * When `experts` is NULL, dense_experts is a host array of n_experts
   * device pointers, each expert's weight [N, K] row-major in x's dtype
   * (N = dst's columns, K = x's columns). */
  const void* const* dense_experts;
} xq_moe_op;

/* One decode step's PAGED_ATTENTION rows, described on the host before the
 * step runs (xq_kernel_vtable.plan_paged_step): what a kernel that plans its
 * work from each row's length needs (FlashInfer's split-KV decode,
 * include/flashinfer/attention/scheduler.cuh DecodePlan), which the ops
 * themselves only carry in device memory. */
typedef struct xq_paged_plan {
  uint32_t struct_size;
  /* Out: 1 when the provider planned kernels for these rows (the step's
   * matching PAGED_ATTENTION ops will use them), 0 when it runs them as
   * without a plan. */
  uint32_t taken;
  /* The ops' query rows, one per sequence: src[0] is [rows, heads,
   * head_dim], src[3] the per-row form [rows, table_ld] (i[1] = 0) and
   * i[0] <= 1. 0: the step has no such plan (prefill or mixed rows). */
  int64_t rows;
  /* Host [rows], read during the call only: the keys row r attends to (its
   * position + 1, at most (table_ld - 1) * block_size). */
  const int32_t* kv_lens;
  int64_t table_ld;
  int64_t block_size;
  int64_t heads, kv_heads, head_dim;
  xq_dtype kv_dtype; /* the pools' element type */
  uint32_t reserved; /* 0 */
  /* Appended (read only when struct_size covers them; 0 / NULL otherwise):
   * a step with prefill rows (rows = 0 above), its ops' src[3] in the
   * per-sequence form with i[1] = seqs. The ops' rows are the sequences'
   * rows in order, sequence s's seq_rows[s] rows consecutive and at
   * consecutive positions, its last row seeing seq_kv_lens[s] keys (its
   * position + 1): a causal prompt chunk, or one decode row. Host arrays,
   * read during the call only. 0: no such description. */
  int64_t seqs;
  const int32_t* seq_rows;
  const int32_t* seq_kv_lens;
} xq_paged_plan;

typedef struct xq_kernel_vtable {
  uint32_t struct_size;
  uint32_t reserved;
  /* 0 = unusable on this machine (e.g. no GPU); higher is preferred.
   * `why` (may be NULL) receives a static message explaining the score. */
  uint32_t (*score)(void* state, const char** why);

  /* Memory. */
  xq_status (*alloc)(void* state, uint64_t nbytes, void** out_ptr);
  void (*free)(void* state, void* ptr);
  xq_status (*upload)(void* state, void* dst_device, const void* src_host, uint64_t nbytes);
  xq_status (*download)(void* state, void* dst_host, const void* src_device, uint64_t nbytes);
  xq_status (*synchronize)(void* state);

  /* Ops. supports_op returns 1 when run_op would run `op` (shapes, dtypes,
   * qweight layout), 0 otherwise; it never fails. */
  uint32_t (*supports_op)(void* state, const xq_op* op);
  xq_status (*run_op)(void* state, const xq_op* op);

  /* Quantized weights: pack `q` (borrowed) into the provider's native layout
   * on its device. XQ_ERR_UNSUPPORTED when the scheme is not advertised. */
  xq_status (*qweight_prepare)(void* state, const xq_quant_tensor* q, xq_qweight** out);
  void (*qweight_release)(void* state, xq_qweight* w); /* accepts NULL */
  /* Static name of the layout `w` is stored in, e.g. "cpu-int8-rows". */
  const char* (*qweight_layout)(void* state, const xq_qweight* w);

  /* Appended in ABI 1.0 (check XQ_HAS_FIELD; both may be NULL): weights a
   * container stores already packed in this provider's layout, taken as is.
   * qweight_packed_layout: the versioned name of the stored layout
   * qweight_prepare would pack `q` into (only its description is read;
   * buffers may be NULL), or NULL when it stores none for it.
   * qweight_adopt: a qweight over `nbytes` bytes of `data` already in layout
   * `layout` for the tensor `desc` describes (buffers NULL). The bytes are
   * borrowed until qweight_release (host providers read them in place; a
   * device provider uploads them unchanged). The provider checks sizes and
   * bounds and never repacks; XQ_ERR_UNSUPPORTED for a layout it does not
   * take, XQ_ERR_MALFORMED (naming the part) for bytes that do not fit. */
  const char* (*qweight_packed_layout)(void* state, const xq_quant_tensor* q);
  xq_status (*qweight_adopt)(void* state, const xq_quant_tensor* desc, const char* layout, const void* data,
                             uint64_t nbytes, xq_qweight** out);
  /* Appended (callers check struct_size first): the provider's memory.
   * free/total: the device's (host providers: 0 = unknown); in_use/peak:
   * bytes in use now, and the most in use since the previous memory_info
   * call (its own workspaces included). May be NULL. */
  xq_status (*memory_info)(void* state, struct xq_memory_info* out);
  /* Appended in 1.0 (read only when struct_size covers it; may be NULL):
   * prepares the rows of `parts[0..n_parts)` stacked in that order (one
   * weight whose rows are parts[0]'s, then parts[1]'s, ...; all with the
   * same cols, each in its own block type) from foreign blocks, executed in
   * their own layout by QMATMUL, DEQUANTIZE and GET_ROWS. The parts'
   * bytes are borrowed as xq_block_tensor says. XQ_ERR_UNSUPPORTED when a
   * part's family/type is not one the provider runs. */
  xq_status (*qweight_prepare_blocks)(void* state, const xq_block_tensor* parts, uint32_t n_parts, xq_qweight** out);
  /* Appended (read only when struct_size covers them; all four NULL for a
   * provider that records nothing, e.g. `cpu`): recorded launches, so a step
   * of many small ops costs one launch on the host (CUDA graphs; PyTorch's
   * torch.cuda.CUDAGraph and vLLM's per-batch-size decode graphs do the
   * same). Between graph_begin and graph_end, run_op records its op instead
   * of running it: nothing executes, and the op's pointers, shapes and
   * parameters are frozen into the recording (the caller keeps the buffers
   * alive and at the same addresses, and refreshes their contents before
   * each launch). alloc, free, upload, download, synchronize and the
   * qweight entries fail while recording. graph_end always stops recording;
   * it returns the graph, or an error naming what could not be recorded
   * (then *out is NULL). graph_launch runs the recorded ops again, in
   * order with the provider's other work and asynchronously like run_op; the
   * provider keeps every internal workspace a recording uses alive until
   * graph_release (accepts NULL), which may be called while a launch is in
   * flight. */
  xq_status (*graph_begin)(void* state);
  xq_status (*graph_end)(void* state, xq_graph** out);
  xq_status (*graph_launch)(void* state, xq_graph* graph);
  void (*graph_release)(void* state, xq_graph* graph);
  /* Appended (read only when struct_size covers it; may be NULL): one
   * mixture-of-experts Linear over all experts (xq_moe_op above). A GPU
   * provider sorts the slots by expert and runs every expert in one launch;
   * a host provider may loop over the experts. XQ_ERR_UNSUPPORTED (with a
   * message) for layouts or shapes it does not run this way. */
  xq_status (*moe_qmatmul)(void* state, const xq_moe_op* op);
  /* Appended (read only when struct_size covers it; may be NULL): 1 when `w`
   * still reads bytes its caller lent (qweight_adopt's data,
   * qweight_prepare_blocks' parts), so the caller keeps them alive until
   * qweight_release; 0 when the provider holds its own copy of everything
   * `w` reads, so the caller may free them once prepare returns. A NULL
   * entry means 1. */
  uint32_t (*qweight_borrows)(void* state, const xq_qweight* w);
  /* Appended (read only when struct_size covers them; may be NULL): a
   * second stored copy of a weight, for a kernel that reads another layout
   * than the one the weight was adopted in (the cuda provider's Hopper GEMM
   * reads W4A16 weights at 64 rows and more in "cuda.w4a16-wgmma.v1").
   * qweight_extra_layout: the versioned name of the copy `w` (made by
   * qweight_adopt or qweight_adopt_stacked) would also take, or NULL when it
   * takes none (this device, this weight, or it has one already).
   * qweight_attach: adds that copy from the stored copies of the n_parts
   * tensors `w` was made of, in the same order (one for a weight adopted
   * alone): descs[i] their descriptions (buffers NULL), data[i] / nbytes[i]
   * their bytes in `layout`. Checked against the descriptions and `w` as
   * qweight_adopt checks (XQ_ERR_MALFORMED naming the part), placed and
   * kept by the provider (nothing borrowed); XQ_ERR_UNSUPPORTED for a layout
   * `w` does not take. A weight without the copy still runs every op, on
   * other kernels. */
  const char* (*qweight_extra_layout)(void* state, const xq_qweight* w);
  xq_status (*qweight_attach)(void* state, xq_qweight* w, const char* layout, const xq_quant_tensor* descs,
                              const void* const* data, const uint64_t* nbytes, uint32_t n_parts);
  /* Appended (read only when struct_size covers it; may be NULL): one
   * weight whose rows are the rows of n_parts stored tensors in order (a
   * q|k|v or gate|up GEMM), each given by its description (buffers NULL) and
   * its bytes in `layout` (qweight_packed_layout's name for each). The
   * provider places each part's bytes where the stacked weight has them
   * (nothing re-encoded) and keeps its own copy; XQ_ERR_UNSUPPORTED, with
   * the reason, where placement cannot stack them (the caller adopts them
   * one by one), XQ_ERR_MALFORMED naming the part for bytes that do not
   * fit. */
  xq_status (*qweight_adopt_stacked)(void* state, const char* layout, const xq_quant_tensor* descs,
                                     const void* const* data, const uint64_t* nbytes, uint32_t n_parts,
                                     xq_qweight** out);
  /* Appended (read only when struct_size covers it; may be NULL): the next
   * step's decode rows, or (appended fields) its prefill and mixed rows
   * (xq_paged_plan). Called before the step's ops run or
   * a recording of them is launched, never while recording. Until the next
   * call, a PAGED_ATTENTION op whose rows, heads, head_dim, table_ld,
   * block_size and pool type match the plan may run kernels planned from
   * it; the provider writes the plan into its own buffers in order with its
   * other work, so a recording made under one plan reads the plan of the
   * step it is launched in. The caller therefore calls it before every step
   * on a provider that has it: with rows = 0 when the step is not one
   * decode row per sequence (so no stale plan is used; seqs describes such
   * a step's sequences where its ops take one table per sequence: a
   * PAGED_ATTENTION op of sum(seq_rows) rows with i[1] = seqs matches that
   * plan; such steps are never recorded), and before each
   * launch of a recording made under a plan with the same shape (rows,
   * table_ld, block_size, heads, kv_heads, head_dim, kv_dtype; new
   * lengths): a provider may refuse the launch otherwise. A provider that
   * cannot use the plan leaves taken = 0; errors only for bad arguments or a
   * failed copy. One caller at a time: the plan is state between calls. */
  xq_status (*plan_paged_step)(void* state, xq_paged_plan* plan);
} xq_kernel_vtable;

#ifdef __cplusplus
}
#endif

#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
XQ_STATIC_ASSERT(sizeof(xq_device_tensor) == 88, "xq_device_tensor size changed");
XQ_STATIC_ASSERT(offsetof(xq_device_tensor, data) == 80, "xq_device_tensor.data moved");
XQ_STATIC_ASSERT(offsetof(xq_op, dst) == 8, "xq_op.dst moved");
XQ_STATIC_ASSERT(offsetof(xq_op, qweight) == 448, "xq_op.qweight moved");
XQ_STATIC_ASSERT(offsetof(xq_op, i) == 520, "xq_op.i moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, run_op) == 64, "kernel.run_op moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_layout) == 88, "kernel.qweight_layout moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_adopt) == 104, "kernel.qweight_adopt moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, memory_info) == 112, "kernel.memory_info moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_prepare_blocks) == 120, "kernel.qweight_prepare_blocks moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, graph_begin) == 128, "kernel.graph_begin moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, graph_release) == 152, "kernel.graph_release moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, moe_qmatmul) == 160, "kernel.moe_qmatmul moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_borrows) == 168, "kernel.qweight_borrows moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_extra_layout) == 176, "kernel.qweight_extra_layout moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_attach) == 184, "kernel.qweight_attach moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, qweight_adopt_stacked) == 192, "kernel.qweight_adopt_stacked moved");
XQ_STATIC_ASSERT(offsetof(xq_kernel_vtable, plan_paged_step) == 200, "kernel.plan_paged_step moved");
XQ_STATIC_ASSERT(sizeof(xq_paged_plan) == 96, "xq_paged_plan size changed");
XQ_STATIC_ASSERT(offsetof(xq_paged_plan, kv_lens) == 16, "xq_paged_plan.kv_lens moved");
XQ_STATIC_ASSERT(offsetof(xq_paged_plan, table_ld) == 24, "xq_paged_plan.table_ld moved");
XQ_STATIC_ASSERT(offsetof(xq_paged_plan, kv_dtype) == 64, "xq_paged_plan.kv_dtype moved");
XQ_STATIC_ASSERT(offsetof(xq_paged_plan, seqs) == 72, "xq_paged_plan.seqs moved");
XQ_STATIC_ASSERT(offsetof(xq_paged_plan, seq_kv_lens) == 88, "xq_paged_plan.seq_kv_lens moved");
XQ_STATIC_ASSERT(sizeof(xq_moe_op) == 416, "xq_moe_op size changed");
XQ_STATIC_ASSERT(offsetof(xq_moe_op, dense_experts) == 408, "xq_moe_op.dense_experts moved");
#endif

#endif /* XQUANT_XQ_KERNEL_H */
