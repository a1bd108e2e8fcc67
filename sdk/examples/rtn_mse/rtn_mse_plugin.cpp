// rtn_mse_plugin.cpp: `rtn-mse`, an example third-party algorithm plugin.
//
// Round-to-nearest with a clipping search: for every group it tries
// shrinking the [min, max] range by factors 1, 1 - s/grid, ... down to
// 1 - max_shrink and keeps the one with the least squared weight error
// (the data-free cousin of AWQ's clip search and llama.cpp's make_qx_quants).
// Written only against the installed xquant SDK: the C++ class below becomes
// the C vtable through xquant::sdk::AlgorithmAdapter, exceptions become
// status codes, and sdk::QuantTensor owns the output until it is handed over.
#include <xquant/sdk/half.hpp>
#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/quantizer.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

namespace {

using namespace xquant::sdk;

float round_even(float x) { return std::nearbyint(x); }

float to_storage(float v, xq_dtype t) {
  if (t == XQ_DTYPE_F16) return round_to_f16(v);
  if (t == XQ_DTYPE_BF16) return round_to_bf16(v);
  return v;
}

struct Choice {
  float scale;
  int zero;
};

// compressed-tensors arithmetic (see docs/pipeline.md): range includes 0.
Choice qparams(float lo, float hi, int bits, bool sym, xq_dtype sd) {
  const int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float s = sym ? std::max(-lo, hi) / (float(qmax - qmin) / 2.0f) : (hi - lo) / float(qmax - qmin);
  s = to_storage(s, sd);
  if (s == 0.0f) s = std::numeric_limits<float>::epsilon();
  int z = sym ? 0 : static_cast<int>(std::clamp(round_even(float(qmin) - lo / s), float(qmin), float(qmax)));
  return {s, z};
}

double sq_error(const float* x, int64_t n, Choice c, int bits) {
  const float qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    float q = std::clamp(round_even(x[i] / c.scale + c.zero), qmin, qmax);
    double d = x[i] - (q - c.zero) * c.scale;
    e += d * d;
  }
  return e;
}

class RtnMse : public PluginBase {
 public:
  using PluginBase::PluginBase;

  uint32_t needs(const KvReader&) { return 0; }

  void quantize(const KvReader& params, xq_layer_group& group, xq_linear_output* outs) {
    const int64_t grid = params.get_int("grid");
    const double max_shrink = params.get_float("max_shrink");
    if (grid < 1) fail(XQ_ERR_INVALID_ARGUMENT, format("grid must be >= 1, got %lld", (long long)grid));
    if (max_shrink < 0 || max_shrink >= 1) fail(XQ_ERR_INVALID_ARGUMENT, "max_shrink must be in [0, 1)");
    for (uint64_t i = 0; i < group.n_linears; ++i) one(group.linears[i], outs[i], grid, max_shrink);
  }

 private:
  void one(const xq_linear_input& in, xq_linear_output& out, int64_t grid, double max_shrink) {
    const xq_quant_scheme& sc = in.scheme;
    if (in.weight.dtype != XQ_DTYPE_F32 || in.weight.ndim != 2)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: expects a 2-D F32 weight", in.name));
    if (sc.strategy == XQ_STRATEGY_TENSOR || sc.strategy == XQ_STRATEGY_BLOCK)
      fail(XQ_ERR_UNSUPPORTED, format("%s: rtn-mse does channel or group strategy", in.name));
    const int64_t rows = in.weight.shape[0], cols = in.weight.shape[1];
    const int64_t gs = sc.strategy == XQ_STRATEGY_GROUP ? sc.group_size : cols;
    const int64_t ng = (cols + gs - 1) / gs;
    const int bits = static_cast<int>(sc.bits);
    const bool sym = sc.symmetric != 0;
    const float* w = static_cast<const float*>(in.weight.data);

    QuantTensor owner(host);  // frees the buffers if anything below throws
    xq_quant_tensor& q = owner.get();
    // The SDK allocates the canonical tensor's buffers and fills its metadata.
    quant::alloc_quant(host, quant::scheme_from(sc, in.name), sc, rows, cols, q);
    double d2 = 0, r2 = 0;
    std::mutex m;
    host.parallel_for(static_cast<uint64_t>(rows), 8, [&](uint64_t b, uint64_t e) {
      double ld2 = 0, lr2 = 0;
      for (int64_t r = static_cast<int64_t>(b); r < static_cast<int64_t>(e); ++r)
        for (int64_t g = 0; g < ng; ++g) {
          const float* x = w + r * cols + g * gs;
          int64_t n = std::min(gs, cols - g * gs);
          float lo = 0, hi = 0;
          for (int64_t k = 0; k < n; ++k) {
            lo = std::min(lo, x[k]);
            hi = std::max(hi, x[k]);
          }
          Choice best = qparams(lo, hi, bits, sym, sc.scale_dtype);
          double best_err = sq_error(x, n, best, bits);
          for (int64_t s = 1; s <= grid; ++s) {
            float f = static_cast<float>(1.0 - max_shrink * double(s) / double(grid));
            Choice c = qparams(lo * f, hi * f, bits, sym, sc.scale_dtype);
            double err = sq_error(x, n, c, bits);
            if (err < best_err) {
              best_err = err;
              best = c;
            }
          }
          q.scales[r * ng + g] = best.scale;
          if (q.zero_points) q.zero_points[r * ng + g] = static_cast<int8_t>(best.zero);
          const float qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
          for (int64_t k = 0; k < n; ++k) {
            float code = std::clamp(round_even(x[k] / best.scale + best.zero), qmin, qmax);
            q.codes[r * cols + g * gs + k] = static_cast<int8_t>(code);
            lr2 += double(x[k]) * x[k];
          }
          ld2 += best_err;
        }
      std::lock_guard<std::mutex> lock(m);
      d2 += ld2;
      r2 += lr2;
    });
    out.quant = owner.release();
    out.rel_error = r2 > 0 ? std::sqrt(d2 / r2) : 0.0;
  }
};

constexpr const char* kCapabilities[] = {"bits:2-8", "symmetric", "asymmetric", "strategy:channel",
                                         "strategy:group", "data-free", nullptr};
constexpr xq_param_spec kParams[] = {
    {"grid", XQ_VALUE_INT, "20", "number of shrink factors tried per group"},
    {"max_shrink", XQ_VALUE_FLOAT, "0.2", "largest fraction of the range clipped away"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr xq_plugin_descriptor kDescriptor =
    describe<RtnMse>(XQ_PLUGIN_ALGORITHM, "rtn-mse", "0.1.0",
                     "RTN with a per-group MSE clipping search (out-of-tree SDK example)", kCapabilities, kParams,
                     &AlgorithmAdapter<RtnMse>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
