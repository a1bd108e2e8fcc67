// fuse.cpp: stacking quantized Linear weights along rows (fuse.hpp).
#include "engine/fuse.hpp"

#include <cstring>

namespace xquant {

namespace {

bool same_description(const xq_quant_tensor& a, const xq_quant_tensor& b, std::string* why) {
  auto no = [&](const char* what) {
    if (why) *why = what;
    return false;
  };
  if (a.bits != b.bits) return no("bits differ");
  if (a.symmetric != b.symmetric || (a.zero_points == nullptr) != (b.zero_points == nullptr))
    return no("symmetry differs");
  if (a.strategy != b.strategy || a.group_size != b.group_size || a.n_groups != b.n_groups)
    return no("strategy or group size differs");
  if (a.cols != b.cols) return no("columns differ");
  if (a.scale_dtype != b.scale_dtype) return no("scale dtype differs");
  if (a.act_scheme != b.act_scheme || a.act_bits != b.act_bits || a.input_scale != b.input_scale)
    return no("activation scheme differs");
  return true;
}

// Whether a and b order their columns into groups the same way: both without
// g_idx, or both with the same g_idx. GPTQ's act-order sorts a Linear's
// columns by the diagonal of its inputs' Hessian (IST-DASLab/gptq, gptq.py,
// `fasterquant(actorder=True)`: perm = argsort(diag(H), descending)), so
// Linears that read the same input (q|k|v, gate|up) get the same permutation;
// vLLM keeps one g_idx for its merged q|k|v and gate|up layers on that
// premise (vllm/model_executor/layers/quantization/gptq.py).
bool same_g_idx(const xq_quant_tensor& a, const xq_quant_tensor& b) {
  if ((a.g_idx == nullptr) != (b.g_idx == nullptr)) return false;
  return !a.g_idx || a.g_idx == b.g_idx ||
         std::memcmp(a.g_idx, b.g_idx, static_cast<size_t>(a.cols) * sizeof(int32_t)) == 0;
}

template <class T>
T* stacked(const std::vector<const xq_quant_tensor*>& parts, T* xq_quant_tensor::*field, int64_t per_row) {
  int64_t total = 0;
  for (const auto* p : parts) total += p->rows * per_row;
  T* out = static_cast<T*>(host_alloc(static_cast<size_t>(total) * sizeof(T)));
  if (!out) return nullptr;
  T* at = out;
  for (const auto* p : parts) {
    std::memcpy(at, p->*field, static_cast<size_t>(p->rows * per_row) * sizeof(T));
    at += p->rows * per_row;
  }
  return out;
}

}  // namespace

std::optional<QuantTensor> stack_rows(const std::vector<const xq_quant_tensor*>& parts, std::string* why) {
  if (parts.empty()) {
    if (why) *why = "nothing to stack";
    return std::nullopt;
  }
  const xq_quant_tensor& first = *parts[0];
  for (const auto* p : parts) {
    if (!same_description(first, *p, why)) return std::nullopt;
    if (!same_g_idx(first, *p)) {
      if (why) *why = "act-order g_idx differs between the parts (one column permutation per weight)";
      return std::nullopt;
    }
    if (p->strategy != XQ_STRATEGY_GROUP && p->strategy != XQ_STRATEGY_CHANNEL) {
      if (why) *why = "per-tensor or block scales";
      return std::nullopt;
    }
  }
  xq_quant_tensor t = first;
  t.rows = 0;
  for (const auto* p : parts) t.rows += p->rows;
  t.codes = nullptr, t.scales = nullptr, t.zero_points = nullptr, t.g_idx = nullptr;
  QuantTensor out = adopt_quant_tensor(t);  // no buffers yet; those set below come from host_alloc
  xq_quant_tensor& o = out.get();
  o.codes = stacked(parts, &xq_quant_tensor::codes, first.cols);
  o.scales = stacked(parts, &xq_quant_tensor::scales, first.n_groups);
  if (first.zero_points) o.zero_points = stacked(parts, &xq_quant_tensor::zero_points, first.n_groups);
  if (first.g_idx) {  // the parts' one permutation, owned by the stacked tensor
    o.g_idx = static_cast<int32_t*>(host_alloc(static_cast<size_t>(first.cols) * sizeof(int32_t)));
    if (o.g_idx) std::memcpy(o.g_idx, first.g_idx, static_cast<size_t>(first.cols) * sizeof(int32_t));
  }
  if (!o.codes || !o.scales || (first.zero_points && !o.zero_points) || (first.g_idx && !o.g_idx)) {
    if (why) *why = "out of host memory";
    return std::nullopt;
  }
  return out;
}

}  // namespace xquant
