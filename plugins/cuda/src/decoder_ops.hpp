// decoder_ops.hpp: the dense ops a decoder-only transformer needs besides
// its GEMMs (embedding gather, RMSNorm, RoPE, attention, SwiGLU, add, mul),
// as host-callable launchers (decoder_ops.cu) plus their xq_op front end
// (decoder_ops_check.cpp) that provider.cpp dispatches to.
//
// Element types: F32 and BF16 (F16 too), read and written through
// load_as_float/store_from_float; arithmetic in float. Launchers enqueue on
// `stream`, return the launch's cudaError_t and never synchronize.
#pragma once

#include <xquant/xq_kernel.h>

#include <string>

#include "kernels.hpp"

namespace xqcuda {

// y[t, :] = table[ids[t], :] for t < T (table [V, D]); an id outside [0, V)
// gives a NaN row (the engine checks ids on the host first).
cudaError_t get_rows(const void* table, DType tt, int64_t V, int64_t D, const int32_t* ids, int64_t T, void* y,
                     DType yt, cudaStream_t stream);

// y[m, :] = x[m, :] / sqrt(mean(x[m, :]^2) + eps) * w; in place allowed.
cudaError_t rms_norm(const void* x, DType xt, const void* w, DType wt, int64_t M, int64_t D, float eps, void* y,
                     DType yt, cudaStream_t stream);

// In place on data [T, H, D]: rotate the first `rot` dims of every head at
// position pos[t] * pos_scale with inv_freq[i] = base^(-2i/rot) / factors[i]
// (factors null = 1); neox pairs (i, i + rot/2), otherwise (2i, 2i + 1).
cudaError_t rope(void* data, DType t, int64_t T, int64_t H, int64_t D, const int32_t* pos, bool neox, int64_t rot,
                 float base, float pos_scale, const float* factors, cudaStream_t stream);

// out[t, h, :] = softmax(q[t, h] · k[0..start+t, h/(H/KVH)]^T * scale) · v,
// q/out [T, H, D], k/v [S, KVH, D]. One block per (t, h); scores of the
// visible keys in shared memory (S floats), so S is bounded by
// attention_max_keys().
cudaError_t attention(const void* q, const void* k, const void* v, DType t, int64_t T, int64_t H, int64_t KVH,
                      int64_t D, int64_t S, int64_t start, float scale, void* out, DType ot, cudaStream_t stream);
int64_t attention_max_keys();

// Elementwise over n = rows * cols: y = silu(a) * b (b same size), a + b or
// a * b where b is [n] or [cols] broadcast on rows.
enum class Binary : int { SwiGlu = 0, Add = 1, Mul = 2 };
cudaError_t binary(Binary op, const void* a, DType at, const void* b, DType bt, int64_t n, int64_t nb, void* y,
                   DType yt, cudaStream_t stream);

// The xq_op front end: supports_op's answer (with the reason in *why) and
// run_op's body for GET_ROWS, RMS_NORM, ROPE, ATTENTION, SWIGLU, ADD, MUL
// and CONVERT. run_decoder_op throws xquant::sdk::Error.
bool is_decoder_op(xq_op_type t);
bool check_decoder_op(const xq_op& op, std::string* why);
void run_decoder_op(const xq_op& op, cudaStream_t stream);

}  // namespace xqcuda
