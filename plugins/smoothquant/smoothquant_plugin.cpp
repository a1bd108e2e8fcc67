// smoothquant_plugin.cpp: the `smoothquant` algorithm plugin (SmoothQuant, arXiv 2211.10438; mit-han-lab/smoothquant smooth.py).
//
// Migrates activation outliers into the weights of a layer group that shares
// a preceding norm (input_layernorm -> q/k/v, post_attention_layernorm ->
// gate/up):
//
//   act_j = max |X_j| over calibration tokens   (stats.absmax; max over the
//                                                 group's linears, which
//                                                 share the input)
//   w_j   = max(max over all rows of all linears |W[:, j]|, 1e-5)
//   s_j   = max(act_j^alpha / w_j^(1 - alpha), 1e-5)
//   prev_op[j] /= s_j;   W[:, j] *= s_j  for every linear of the group
//
// so Linear(Norm(x)) is unchanged in exact arithmetic. Groups without a 1-D
// prev_op (o_proj, down_proj, lone linears) are not smoothed (SmoothQuant
// and llm-compressor's default mappings leave them alone).
//
// Then, with `quantize: true` (default), it quantizes every linear with RTN
// under the rule's scheme (W8A8: int8 per-channel weights, act_scheme from
// the scheme; for static per-tensor activations the input scale comes from the
// smoothed absmax). With `quantize: false` it is transform-only: it leaves
// outs[i].quant.codes NULL so the rule's next algorithm (e.g. gptq) quantizes
// the smoothed weights.
#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/quantizer.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using namespace xquant::sdk;

class SmoothQuantAlgorithm : public PluginBase {
 public:
  using PluginBase::PluginBase;

  uint32_t needs(const KvReader&) { return XQ_NEED_ABSMAX; }

  void quantize(const KvReader& params, xq_layer_group& group, xq_linear_output* outs) {
    const double alpha = params.get_float("alpha", 0.5);
    const bool do_quantize = params.get_bool("quantize", true);
    if (!(alpha >= 0.0 && alpha <= 1.0))
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: smoothquant alpha must be in [0, 1], got %g", group.name, alpha));
    if (group.n_linears == 0) fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the group has no linears", group.name));
    for (uint64_t i = 0; i < group.n_linears; ++i) quant::check_weight(group.linears[i]);
    const int64_t cols = group.linears[0].weight.shape[1];
    for (uint64_t i = 1; i < group.n_linears; ++i)
      if (group.linears[i].weight.shape[1] != cols)
        fail(XQ_ERR_INVALID_ARGUMENT, format("%s: %s has %lld inputs, %s has %lld; a smoothing group shares its input",
                                             group.name, group.linears[i].name,
                                             static_cast<long long>(group.linears[i].weight.shape[1]),
                                             group.linears[0].name, static_cast<long long>(cols)));

    // The original weights, for rel_error in the unsmoothed basis.
    std::vector<std::vector<float>> originals;
    std::vector<float> s;  // empty: not smoothed
    const bool smooth = group.prev_op.data != nullptr && group.prev_op.ndim == 1;
    if (smooth) {
      if (group.prev_op.dtype != XQ_DTYPE_F32 || group.prev_op.shape[0] != cols)
        fail(XQ_ERR_INVALID_ARGUMENT, format("%s: prev_op must be F32 [%lld]", group.name, static_cast<long long>(cols)));
      const std::vector<float> act = merged_absmax(group, cols);
      s = factors(group, act.data(), cols, alpha);
      if (do_quantize)
        for (uint64_t i = 0; i < group.n_linears; ++i) {
          const float* w = static_cast<const float*>(group.linears[i].weight.data);
          originals.emplace_back(w, w + group.linears[i].weight.shape[0] * cols);
        }
      fold(group, s, cols);
      host.debug(format("%s: smoothed %llu linears (alpha %.3f)", group.name,
                        static_cast<unsigned long long>(group.n_linears), alpha));
    } else {
      host.debug(format("%s: no 1-D prev_op, not smoothed", group.name));
    }

    if (!do_quantize) {
      for (uint64_t i = 0; i < group.n_linears; ++i) outs[i].rel_error = 0.0;
      return;  // transform-only: codes stay NULL
    }
    for (uint64_t i = 0; i < group.n_linears; ++i)
      quantize_one(group.linears[i], outs[i], s, smooth ? originals[i].data() : nullptr, cols);
  }

 private:
  // The per-column max |x| over the group's linears (they share the input,
  // so these are normally identical; the max is the safe merge).
  static std::vector<float> merged_absmax(const xq_layer_group& group, int64_t cols) {
    std::vector<float> merged(static_cast<size_t>(cols), 0.0f);
    bool any = false;
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      const xq_linear_stats* st = group.linears[i].stats;
      if (!st || !st->absmax) continue;
      if (st->cols != cols)
        fail(XQ_ERR_INVALID_ARGUMENT, format("%s: stats have %lld columns, the weight %lld", group.linears[i].name,
                                             static_cast<long long>(st->cols), static_cast<long long>(cols)));
      for (int64_t j = 0; j < cols; ++j) merged[j] = std::max(merged[j], st->absmax[j]);
      any = true;
    }
    if (!any)
      fail(XQ_ERR_INVALID_ARGUMENT,
           format("%s: smoothquant needs calibration (per-column absmax of the input); none was given", group.name));
    return merged;
  }

  static std::vector<float> factors(const xq_layer_group& group, const float* act, int64_t cols, double alpha) {
    std::vector<float> wmax(static_cast<size_t>(cols), 0.0f);
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      const float* w = static_cast<const float*>(group.linears[i].weight.data);
      const int64_t rows = group.linears[i].weight.shape[0];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) wmax[j] = std::max(wmax[j], std::fabs(w[r * cols + j]));
    }
    std::vector<float> s(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) {
      // Computed in double and rounded once, so the factors are the exact
      // float of the formula (the test checks them by hand).
      double w = std::max(static_cast<double>(wmax[j]), 1e-5);
      double v = std::pow(static_cast<double>(act[j]), alpha) / std::pow(w, 1.0 - alpha);
      if (!std::isfinite(v))
        fail(XQ_ERR_INVALID_ARGUMENT, format("%s: smoothing factor of column %lld is not finite (absmax %g)",
                                             group.name, static_cast<long long>(j), static_cast<double>(act[j])));
      s[j] = static_cast<float>(std::max(v, 1e-5));
    }
    return s;
  }

  static void fold(xq_layer_group& group, const std::vector<float>& s, int64_t cols) {
    float* norm = static_cast<float*>(group.prev_op.data);
    for (int64_t j = 0; j < cols; ++j) norm[j] /= s[j];
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      float* w = static_cast<float*>(group.linears[i].weight.data);
      const int64_t rows = group.linears[i].weight.shape[0];
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) w[r * cols + j] *= s[j];
    }
  }

  void quantize_one(const xq_linear_input& in, xq_linear_output& out, const std::vector<float>& s,
                    const float* original, int64_t cols) {
    const quant::Scheme sc = quant::scheme_from(in.scheme, in.name);
    const int64_t rows = in.weight.shape[0];
    const float* w = static_cast<const float*>(in.weight.data);
    std::vector<float> deq(static_cast<size_t>(rows * cols));
    QuantTensor owner(host);  // frees the buffers if anything below throws
    xq_quant_tensor& q = owner.get();
    quant::ErrorSums e = quant::rtn_matrix(host, sc, in.scheme, w, rows, cols, q, deq.data());
    if (original) {  // the error in the original basis: W vs W_hat / s
      e = {};
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) {
          double d = static_cast<double>(original[r * cols + j]) - deq[r * cols + j] / s[j];
          e.diff2 += d * d;
          e.ref2 += static_cast<double>(original[r * cols + j]) * original[r * cols + j];
        }
    }
    out.quant = owner.release();
    out.rel_error = e.rel();
  }

};

constexpr xq_param_spec kParams[] = {
    {"alpha", XQ_VALUE_FLOAT, "0.5", "migration strength: s_j = max|X_j|^alpha / max|W_j|^(1-alpha)"},
    {"quantize", XQ_VALUE_BOOL, "true",
     "true: smooth then RTN-quantize with the rule's scheme; false: smooth only (transform-only, codes left "
     "NULL for the rule's next algorithm, e.g. gptq)"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr const char* kCapabilities[] = {"bits:2-8", "symmetric", "asymmetric", "strategy:tensor",
                                         "strategy:channel", "strategy:group", "transform", "needs:absmax",
                                         "scheme-default:bits=8", "scheme-default:activations=dynamic", nullptr};

constexpr xq_plugin_descriptor kDescriptor = describe<SmoothQuantAlgorithm>(
    XQ_PLUGIN_ALGORITHM, "smoothquant", "1.0.0",
    "SmoothQuant: fold activation outliers into the weights (prev norm / s, W[:, j] * s), then RTN (or transform "
    "only)",
    kCapabilities, kParams, &AlgorithmAdapter<SmoothQuantAlgorithm>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
