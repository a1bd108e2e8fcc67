// moe_ops_check.cpp: validation and dispatch of MOE_ROUTE and MOE_COMBINE
// on the `cuda` provider (moe_ops.hpp). One check answers both supports_op
// and run_op.
#include "moe_ops.hpp"

#include <xquant/sdk/host.hpp>
#include <xquant/sdk/tensor.hpp>

namespace xqcuda {

using xquant::sdk::Error;
using xquant::sdk::format;

namespace {

bool is_2d(const xq_device_tensor& t, xq_dtype dt) {
  return t.data && t.ndim == 2 && t.dtype == dt && xquant::sdk::is_contiguous(t) && t.shape[0] >= 0 && t.shape[1] > 0;
}

bool refuse(std::string* why, const char* op, const std::string& what) {
  if (why) *why = format("cuda: %s: %s", op, what.c_str());
  return false;
}

}  // namespace

bool is_moe_op(xq_op_type t) { return t == XQ_OP_MOE_ROUTE || t == XQ_OP_MOE_COMBINE; }

bool check_moe_op(const xq_op& op, std::string* why) {
  const auto& d = op.dst;
  const auto* s = op.src;
  if (op.type == XQ_OP_MOE_ROUTE) {
    const char* n = "MOE_ROUTE";
    if (!is_2d(s[0], XQ_DTYPE_F32)) return refuse(why, n, "src[0] (router logits) must be contiguous F32 [T, E]");
    if (!is_2d(d, XQ_DTYPE_I32)) return refuse(why, n, "dst (expert ids) must be contiguous I32 [T, top_k]");
    if (!is_2d(s[1], XQ_DTYPE_F32)) return refuse(why, n, "src[1] (weights, written) must be contiguous F32 [T, top_k]");
    if (d.shape[0] != s[0].shape[0] || s[1].shape[0] != s[0].shape[0] || s[1].shape[1] != d.shape[1])
      return refuse(why, n, "dst and src[1] must be [T, top_k] for src[0]'s T rows");
    if (s[0].shape[1] > kMoeRouteMaxExperts)
      return refuse(why, n, format("at most %lld experts, got %lld", (long long)kMoeRouteMaxExperts, (long long)s[0].shape[1]));
    if (d.shape[1] > 32 || d.shape[1] > s[0].shape[1])
      return refuse(why, n, format("top_k %lld must be at most 32 and at most the %lld experts", (long long)d.shape[1],
                                   (long long)s[0].shape[1]));
    if (op.i[0] != 0 && op.i[0] != 1) return refuse(why, n, "i[0] (norm_topk_prob) must be 0 or 1");
    return true;
  }
  const char* n = "MOE_COMBINE";
  if (!is_2d(d, XQ_DTYPE_F32)) return refuse(why, n, "dst must be contiguous F32 [T, N]");
  if (!is_2d(s[0], XQ_DTYPE_F32) || s[0].shape[1] != d.shape[1]) return refuse(why, n, "src[0] must be contiguous F32 [R, N]");
  if (!is_2d(s[1], XQ_DTYPE_F32) || s[1].shape[0] != d.shape[0]) return refuse(why, n, "src[1] (weights) must be F32 [T, k]");
  const int64_t slots = s[1].shape[0] * s[1].shape[1];
  if (s[2].data && (s[2].dtype != XQ_DTYPE_I32 || !xquant::sdk::is_contiguous(s[2]) || xquant::sdk::numel(s[2]) != slots))
    return refuse(why, n, "src[2] (row of each slot) must be contiguous I32 [T * k]");
  if (!s[2].data && s[0].shape[0] < slots) return refuse(why, n, "src[0] must hold T * k rows when src[2] is absent");
  if (op.i[0] != 0 && op.i[0] != 1) return refuse(why, n, "i[0] (0 weights as given, 1 sigmoid) must be 0 or 1");
  return true;
}

void run_moe_op(const xq_op& op, cudaStream_t stream) {
  std::string why;
  if (!check_moe_op(op, &why)) throw Error(XQ_ERR_UNSUPPORTED, why);
  const auto& d = op.dst;
  const auto* s = op.src;
  cudaError_t e;
  if (op.type == XQ_OP_MOE_ROUTE) {
    e = moe_route(static_cast<const float*>(s[0].data), s[0].shape[0], s[0].shape[1], d.shape[1], op.i[0] == 1,
                  static_cast<int32_t*>(d.data), static_cast<float*>(s[1].data), stream);
  } else {
    e = moe_combine_rows(static_cast<const float*>(s[0].data), s[0].shape[0], static_cast<const float*>(s[1].data),
                         static_cast<const int32_t*>(s[2].data), d.shape[0], s[1].shape[1], d.shape[1], op.i[0] == 1,
                         static_cast<float*>(d.data), stream);
  }
  if (e != cudaSuccess)
    throw Error(XQ_ERR_DEVICE, format("cuda: %s launch failed: %s", op.type == XQ_OP_MOE_ROUTE ? "MOE_ROUTE" : "MOE_COMBINE",
                                      cudaGetErrorString(e)));
}

}  // namespace xqcuda
