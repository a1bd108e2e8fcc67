// algo_harness.hpp: shared scaffolding for the calibration-algorithm tests.
//
// The tests drive the real plugins (smoothquant, awq, gptq, rtn) from the
// build tree through the runtime's registry and their C vtables, so the
// whole ABI path (param kv, layer group, host services, host-allocated
// outputs) is exercised the way the pipeline uses it. This header builds
// layer groups from plain vectors, calls a plugin, owns the outputs, and has
// the small linear-algebra helpers the checks need.
#pragma once

#include "core/error.hpp"
#include "core/kv.hpp"
#include "core/log.hpp"
#include "core/memory.hpp"
#include "core/runtime.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <cmath>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace algotest {

inline xquant::Runtime& runtime() {
  static xquant::Runtime rt([] {
    xquant::RuntimeOptions o;
    o.threads = 2;
    o.log_level = XQ_LOG_DEBUG;
    return o;
  }());
  return rt;
}

inline xquant::LoadedPlugin& plugin(const std::string& name) {
  return runtime().plugins().require(XQ_PLUGIN_ALGORITHM, name);
}

// Everything one Linear of a group needs, owned.
struct Linear {
  std::string name;
  int64_t rows = 0, cols = 0;
  std::vector<float> w;
  std::vector<float> absmax, mean_abs, hessian, samples;
  uint64_t tokens = 0;
  int64_t n_samples = 0;
  xq_quant_scheme scheme{};
  xq_linear_stats stats{};
  bool with_stats = true;
  // Hand this Linear the other's Hessian buffer itself (as the pipeline does
  // for Linears that read one input), not a copy of it.
  const Linear* hessian_of = nullptr;

  Linear(std::string n, int64_t r, int64_t c) : name(std::move(n)), rows(r), cols(c), w(static_cast<size_t>(r * c)) {
    scheme.struct_size = sizeof(scheme);
    set_scheme(4, true, XQ_STRATEGY_GROUP, 128);
  }
  void set_scheme(uint32_t bits, bool sym, xq_strategy g, int64_t gs, xq_act_scheme act = XQ_ACT_NONE) {
    scheme.bits = bits;
    scheme.symmetric = sym ? 1 : 0;
    scheme.strategy = g;
    scheme.group_size = g == XQ_STRATEGY_GROUP ? gs : cols;
    scheme.scale_dtype = XQ_DTYPE_F32;
    scheme.act_scheme = act;
    scheme.act_bits = act == XQ_ACT_NONE ? 0 : 8;
  }
  // Fills every statistic from calibration inputs X [T, cols].
  void set_inputs(const std::vector<float>& x, int64_t T) {
    absmax.assign(static_cast<size_t>(cols), 0.0f);
    mean_abs.assign(static_cast<size_t>(cols), 0.0f);
    std::vector<double> ma(static_cast<size_t>(cols), 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < cols; ++j) {
        float v = std::fabs(x[size_t(t * cols + j)]);
        absmax[size_t(j)] = std::max(absmax[size_t(j)], v);
        ma[size_t(j)] += v;
      }
    for (int64_t j = 0; j < cols; ++j) mean_abs[size_t(j)] = float(ma[size_t(j)] / double(T));
    hessian.assign(static_cast<size_t>(cols * cols), 0.0f);
    for (int64_t a = 0; a < cols; ++a)
      for (int64_t b = 0; b < cols; ++b) {
        double s = 0;
        for (int64_t t = 0; t < T; ++t) s += double(x[size_t(t * cols + a)]) * x[size_t(t * cols + b)];
        hessian[size_t(a * cols + b)] = float(s);
      }
    samples = x;
    n_samples = T;
    tokens = uint64_t(T);
  }
  xq_linear_input input() {
    stats = xquant::sdk::make_struct<xq_linear_stats>();
    stats.cols = cols;
    stats.tokens = tokens;
    stats.absmax = absmax.empty() ? nullptr : absmax.data();
    stats.mean_abs = mean_abs.empty() ? nullptr : mean_abs.data();
    stats.hessian = hessian_of ? hessian_of->hessian.data() : hessian.empty() ? nullptr : hessian.data();
    stats.samples = samples.empty() ? nullptr : samples.data();
    stats.n_samples = n_samples;
    auto in = xquant::sdk::make_struct<xq_linear_input>();
    in.name = name.c_str();
    in.weight = xquant::sdk::f32_view(w, {rows, cols});
    in.bias = xquant::sdk::empty_view();
    in.stats = with_stats ? &stats : nullptr;
    in.scheme = scheme;
    return in;
  }
};

// The outcome of one quantize call.
struct Result {
  xq_status status = XQ_OK;
  std::string error;
  std::vector<xquant::QuantTensor> quant;
  std::vector<double> rel_error;
};

struct Params {
  xq_kv kv;
  Params& set(const char* k, double v) {
    kv.set(k, xquant::KvValue::number(v));
    return *this;
  }
  Params& set_int(const char* k, int64_t v) {
    kv.set(k, xquant::KvValue::integer(v));
    return *this;
  }
  Params& set_bool(const char* k, bool v) {
    kv.set(k, xquant::KvValue::boolean(v));
    return *this;
  }
};

// prev: a 1-D norm weight, a 2-D previous Linear weight [cols, prev_in] or
// nothing (empty).
inline Result run(const std::string& algorithm, const Params& params, std::vector<Linear*> linears,
                  std::vector<float>* prev = nullptr, int64_t prev_in = 0, const char* role = "linear",
                  const xq_group_forward* forward = nullptr) {
  std::vector<xq_linear_input> ins;
  for (Linear* l : linears) ins.push_back(l->input());
  auto g = xquant::sdk::make_struct<xq_layer_group>();
  g.name = "test.group";
  g.n_linears = ins.size();
  g.linears = ins.data();
  g.prev_op = !prev         ? xquant::sdk::empty_view()
              : prev_in > 0 ? xquant::sdk::f32_view(*prev, {int64_t(prev->size()) / prev_in, prev_in})
                            : xquant::sdk::f32_view(*prev);
  g.role = role;
  g.forward = forward;
  std::vector<xq_linear_output> outs(ins.size());
  for (auto& o : outs) {
    o = xquant::sdk::make_struct<xq_linear_output>();
    o.quant = xquant::sdk::make_struct<xq_quant_tensor>();
  }
  xquant::LoadedPlugin& p = plugin(algorithm);
  Result r;
  r.status = p.algorithm().quantize(p.state, &params.kv, &g, outs.data());
  if (r.status != XQ_OK) r.error = xquant::last_error();
  for (auto& o : outs) {
    r.quant.push_back(xquant::adopt_quant_tensor(o.quant));
    r.rel_error.push_back(o.rel_error);
  }
  return r;
}

inline uint32_t needs(const std::string& algorithm, const Params& params = Params()) {
  xquant::LoadedPlugin& p = plugin(algorithm);
  return p.algorithm().needs(p.state, &params.kv);
}

// Dequantizes a canonical tensor with its own g_idx logic (independent of
// QuantTensor::dequantize_row, which the tests also cross-check).
inline std::vector<float> dequantize(const xq_quant_tensor& q) {
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r)
    for (int64_t c = 0; c < q.cols; ++c) {
      int64_t g = 0;
      if (q.strategy == XQ_STRATEGY_GROUP) g = q.g_idx ? q.g_idx[c] : c / q.group_size;
      const int64_t idx = q.strategy == XQ_STRATEGY_TENSOR ? 0 : r * q.n_groups + g;
      const float zp = q.zero_points ? float(q.zero_points[idx]) : 0.0f;
      out[size_t(r * q.cols + c)] = (float(q.codes[r * q.cols + c]) - zp) * q.scales[idx];
    }
  return out;
}

inline std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// y[T, rows] = x[T, cols] * w[rows, cols]^T (double accumulation).
inline std::vector<float> matmul_t(const std::vector<float>& x, int64_t T, const std::vector<float>& w, int64_t rows,
                                   int64_t cols) {
  std::vector<float> y(static_cast<size_t>(T * rows));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += double(x[size_t(t * cols + j)]) * w[size_t(r * cols + j)];
      y[size_t(t * rows + r)] = float(s);
    }
  return y;
}

inline double mse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s / double(a.size());
}

inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double amax = 0, d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    amax = std::max(amax, std::fabs(double(a[i])));
    d = std::max(d, std::fabs(double(a[i]) - b[i]));
  }
  return amax > 0 ? d / amax : d;
}

// Captures the runtime logger's output (plugin warnings) while alive.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    xquant::logger().sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = xquant::logger().sinks();
    for (auto it = sinks.begin(); it != sinks.end(); ++it)
      if (*it == sink_) {
        sinks.erase(it);
        break;
      }
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

}  // namespace algotest
