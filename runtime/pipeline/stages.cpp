#include "pipeline/stages.hpp"

#include "core/error.hpp"
#include "plugins/call.hpp"

#include <algorithm>
#include <fmt/format.h>

#include <memory>
#include <vector>

namespace xquant {

uint32_t rule_needs(Runtime& runtime, const QuantRule& rule) {
  uint32_t needs = 0;
  for (const auto& st : rule.stages) {
    LoadedPlugin& p = runtime.plugins().require(XQ_PLUGIN_ALGORITHM, st.name);
    needs |= p.algorithm().needs(p.state, &st.validated_params);
  }
  return needs;
}

bool rule_needs_forward(Runtime& runtime, const QuantRule& rule) {
  for (const auto& st : rule.stages)
    if (runtime.plugins().require(XQ_PLUGIN_ALGORITHM, st.name).has_capability("needs:forward")) return true;
  return false;
}

uint32_t abi_bits(const std::string& type, int bits) {
  return type == "float" ? XQ_BITS_F8_E4M3 : static_cast<uint32_t>(bits);
}

xq_quant_scheme scheme_of(const WeightScheme& w, const ActivationScheme& a, int64_t cols, xq_dtype scale_dtype) {
  xq_quant_scheme s{};
  s.struct_size = sizeof(s);
  s.bits = abi_bits(w.type, w.bits);
  s.symmetric = w.symmetric ? 1 : 0;
  s.strategy = w.strategy;
  s.group_size = w.strategy == XQ_STRATEGY_GROUP ? w.group_size : cols;
  s.scale_dtype = scale_dtype;
  if (a.enabled) {
    s.act_scheme = a.dynamic ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_STATIC_TENSOR;
    s.act_bits = abi_bits(a.type.empty() ? w.type : a.type, a.bits);
  }
  return s;
}

xq_dtype scale_dtype_for(const WeightScheme& w, const Kv& config) {
  std::string name = w.scale_dtype;
  if (name == "auto") name = config.get_string("torch_dtype", "float32");
  if (name == "bfloat16") return XQ_DTYPE_BF16;
  if (name == "float16") return XQ_DTYPE_F16;
  return XQ_DTYPE_F32;
}

WeightScheme effective_weights(const WeightScheme& w, int64_t cols, bool format_takes_ragged, std::string* why) {
  if (w.strategy != XQ_STRATEGY_GROUP || cols % w.group_size == 0 || format_takes_ragged) return w;
  WeightScheme out = w;
  out.strategy = XQ_STRATEGY_CHANNEL;
  if (why)
    *why = fmt::format("{} input columns are not a multiple of group_size {} and the output format stores whole "
                       "groups only: per-channel instead",
                       cols, w.group_size);
  return out;
}

namespace {

// Statistics of an input that a transform divided by s (the preceding norm
// rescaled by 1/s): x' = x / s, so absmax, mean|x| and samples scale by 1/s,
// sum x^2 by 1/s^2 and the Hessian by 1/(s_j s_k).
struct RescaledStats {
  std::vector<float> absmax, mean_abs, sum_sq, hessian, samples;
  xq_linear_stats view{};

  RescaledStats(const xq_linear_stats& st, const std::vector<double>& s) : view(st) {
    const int64_t n = st.cols;
    auto scale = [&](const float* src, std::vector<float>& dst, int power) {
      if (!src) return (const float*)nullptr;
      dst.assign(src, src + n);
      for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<float>(dst[j] / (power == 2 ? s[j] * s[j] : s[j]));
      return static_cast<const float*>(dst.data());
    };
    view.absmax = scale(st.absmax, absmax, 1);
    view.mean_abs = scale(st.mean_abs, mean_abs, 1);
    view.sum_sq = scale(st.sum_sq, sum_sq, 2);
    if (st.hessian) {
      hessian.assign(st.hessian, st.hessian + n * n);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t k = 0; k < n; ++k) hessian[j * n + k] = static_cast<float>(hessian[j * n + k] / (s[j] * s[k]));
      view.hessian = hessian.data();
    }
    if (st.samples) {
      samples.assign(st.samples, st.samples + st.n_samples * n);
      for (int64_t r = 0; r < st.n_samples; ++r)
        for (int64_t j = 0; j < n; ++j) samples[r * n + j] = static_cast<float>(samples[r * n + j] / s[j]);
      view.samples = samples.data();
    }
  }
};

}  // namespace

GroupResult run_stages(Runtime& runtime, const QuantRule& rule, xq_layer_group& group) {
  const size_t n = group.n_linears;
  // Stats handed to later stages after a transform rescaled the input.
  std::vector<std::unique_ptr<RescaledStats>> rescaled;
  std::vector<const xq_linear_stats*> original(n);
  for (size_t i = 0; i < n; ++i) original[i] = group.linears[i].stats;
  // The caller's group never points at our temporary statistics afterwards.
  struct Restore {
    xq_layer_group& g;
    std::vector<const xq_linear_stats*>& o;
    ~Restore() {
      for (size_t i = 0; i < o.size(); ++i) g.linears[i].stats = o[i];
    }
  } restore{group, original};
  for (size_t k = 0; k < rule.stages.size(); ++k) {
    const AlgorithmStage& st = rule.stages[k];
    const bool last = k + 1 == rule.stages.size();
    LoadedPlugin& algo = runtime.plugins().require(XQ_PLUGIN_ALGORITHM, st.name);
    const bool norm_fed = group.prev_op.data && group.prev_op.ndim == 1;
    std::vector<float> norm_before;
    if (norm_fed && !last) {
      const float* p = static_cast<const float*>(group.prev_op.data);
      norm_before.assign(p, p + group.prev_op.shape[0]);
    }
    std::vector<xq_linear_output> outs(n);
    for (auto& o : outs) {
      o.struct_size = sizeof(o);
      o.quant.struct_size = sizeof(o.quant);
    }
    xq_status s = algo.algorithm().quantize(algo.state, &st.validated_params, &group, outs.data());
    GroupResult r;
    for (auto& o : outs) {
      r.quant.push_back(adopt_quant_tensor(o.quant));  // owns buffers, also on failure
      r.rel_error.push_back(o.rel_error);
    }
    check_plugin_call(s, fmt::format("{}: group '{}'", st.name, group.name ? group.name : "?"));
    for (size_t i = 0; i < n; ++i) {
      bool quantized = r.quant[i]->codes != nullptr;
      if (last && !quantized)
        fail(XQ_ERR_INVALID_ARGUMENT, "{}: '{}' is the last algorithm of the rule but did not quantize '{}'",
             rule.mark.text(), st.name, group.linears[i].name);
      if (!last && quantized)
        fail(XQ_ERR_INVALID_ARGUMENT, "{}: '{}' quantized '{}' but is not the last algorithm of the rule {}",
             rule.mark.text(), st.name, group.linears[i].name, rule.algorithm_names());
    }
    if (last) return r;
    // A transform that rescaled the norm by 1/s changed the input every
    // linear sees: the next stage gets statistics of x / s.
    if (!norm_before.empty()) {
      const float* after = static_cast<const float*>(group.prev_op.data);
      std::vector<double> s(norm_before.size(), 1.0);
      bool changed = false;
      for (size_t j = 0; j < s.size(); ++j)
        if (norm_before[j] != 0.0f && after[j] != 0.0f && norm_before[j] != after[j]) {
          s[j] = static_cast<double>(norm_before[j]) / after[j];
          changed = true;
        }
      if (changed) {
        // One rescaled copy per distinct statistics set (a MoE group's
        // experts on all-token statistics share one; Hessians are big).
        std::vector<std::pair<const float*, const xq_linear_stats*>> done;
        for (size_t i = 0; i < n; ++i) {
          const xq_linear_stats* st = group.linears[i].stats;
          if (!st || st->cols != static_cast<int64_t>(s.size())) continue;
          const float* key = st->hessian ? st->hessian : st->absmax ? st->absmax : st->mean_abs;
          auto it = std::find_if(done.begin(), done.end(), [&](const auto& d) { return key && d.first == key; });
          if (it != done.end()) {
            group.linears[i].stats = it->second;
            continue;
          }
          rescaled.push_back(std::make_unique<RescaledStats>(*st, s));
          group.linears[i].stats = &rescaled.back()->view;
          done.emplace_back(key, group.linears[i].stats);
        }
      }
    }
  }
  fail(XQ_ERR_INTERNAL, "rule without algorithms");
}

}  // namespace xquant
