#include "pipeline/stages.hpp"

#include "core/error.hpp"
#include "plugins/call.hpp"

#include <fmt/format.h>

namespace xquant {

uint32_t rule_needs(Runtime& runtime, const QuantRule& rule) {
  uint32_t needs = 0;
  for (const auto& st : rule.stages) {
    LoadedPlugin& p = runtime.plugins().require(XQ_PLUGIN_ALGORITHM, st.name);
    needs |= p.algorithm().needs(p.state, &st.validated_params);
  }
  return needs;
}

xq_quant_scheme scheme_of(const WeightScheme& w, const ActivationScheme& a, int64_t cols, xq_dtype scale_dtype) {
  xq_quant_scheme s{};
  s.struct_size = sizeof(s);
  s.bits = static_cast<uint32_t>(w.bits);
  s.symmetric = w.symmetric ? 1 : 0;
  s.granularity = w.granularity;
  s.group_size = w.granularity == XQ_GRAN_GROUP ? w.group_size : cols;
  s.scale_dtype = scale_dtype;
  if (a.enabled) {
    s.act_scheme = a.dynamic ? XQ_ACT_DYNAMIC_TOKEN : XQ_ACT_STATIC_TENSOR;
    s.act_bits = static_cast<uint32_t>(a.bits);
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
  if (w.granularity != XQ_GRAN_GROUP || cols % w.group_size == 0 || format_takes_ragged) return w;
  WeightScheme out = w;
  out.granularity = XQ_GRAN_CHANNEL;
  if (why)
    *why = fmt::format("{} input columns are not a multiple of group_size {} and the output format stores whole "
                       "groups only: per-channel instead",
                       cols, w.group_size);
  return out;
}

GroupResult run_stages(Runtime& runtime, const QuantRule& rule, xq_layer_group& group) {
  const size_t n = group.n_linears;
  for (size_t k = 0; k < rule.stages.size(); ++k) {
    const AlgorithmStage& st = rule.stages[k];
    const bool last = k + 1 == rule.stages.size();
    LoadedPlugin& algo = runtime.plugins().require(XQ_PLUGIN_ALGORITHM, st.name);
    std::vector<xq_linear_output> outs(n);
    for (auto& o : outs) {
      o.struct_size = sizeof(o);
      o.quant.struct_size = sizeof(o.quant);
    }
    xq_status s = algo.algorithm().quantize(algo.state, &st.validated_params, &group, outs.data());
    GroupResult r;
    for (auto& o : outs) {
      r.quant.emplace_back(o.quant);  // owns buffers, also on failure
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
  }
  fail(XQ_ERR_INTERNAL, "rule without algorithms");
}

}  // namespace xquant
