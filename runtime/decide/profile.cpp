// profile.cpp: see profile.hpp.
#include "decide/profile.hpp"

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "pipeline/group_forward.hpp"
#include "pipeline/prev_op.hpp"
#include "pipeline/stages.hpp"

#include <xquant/sdk/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

namespace xquant::decide {

namespace {

const char* kRoles[] = {"attn_qkv", "attn_o", "mlp_gate_up", "mlp_down"};

// The role algorithms see: a MoE layer's groups after mlp_in are down_projs
// (as pipeline/calibrated_runner.cpp tells them).
const char* role_of(const LayerDesc& desc, int g) {
  return desc.moe && g > LayerDesc::kMlpIn ? kRoles[LayerDesc::kMlpOut] : kRoles[g];
}

// A dense layer's groups by role; a MoE layer's expert groups by their own
// names (model.layers.L.mlp.experts.E.mlp_out).
std::string group_name(const LayerDesc& desc, int g) {
  if (desc.moe && g > LayerDesc::kMlpIn) return desc.groups[static_cast<size_t>(g)].name;
  return fmt::format("model.layers.{}.{}", desc.index, kRoles[g]);
}





// tr(D H D^T) for D = a - b ([rows, cols]) and H [cols, cols].
double weighted_error(const std::vector<float>& a, const std::vector<float>* b, const std::vector<float>& h,
                      int64_t rows, int64_t cols) {
  double total = 0;
  std::vector<double> d(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j)
      d[j] = static_cast<double>(a[r * cols + j]) - (b ? static_cast<double>((*b)[r * cols + j]) : 0.0);
    for (int64_t j = 0; j < cols; ++j) {
      if (d[j] == 0) continue;
      double hd = 0;
      const float* hj = h.data() + j * cols;
      for (int64_t k = 0; k < cols; ++k) hd += hj[k] * d[k];
      total += d[j] * hd;
    }
  }
  return total;
}

ActivationProfile activation_profile(const InputStats& s) {
  ActivationProfile a;
  if (!s.absmax.empty()) {
    std::vector<float> m = s.absmax;
    std::nth_element(m.begin(), m.begin() + m.size() / 2, m.end());
    const double median = m[m.size() / 2];
    const double mx = *std::max_element(s.absmax.begin(), s.absmax.end());
    a.max_over_median_absmax = median > 0 ? mx / median : 0;
  }
  if (s.n_samples > 0) {
    const size_t n = s.samples.size();
    double mean = 0;
    for (float v : s.samples) mean += v;
    mean /= static_cast<double>(n);
    double m2 = 0, m4 = 0;
    size_t over = 0;
    for (float v : s.samples) {
      const double c = v - mean, c2 = c * c;
      m2 += c2;
      m4 += c2 * c2;
      if (std::fabs(v) > 6.0f) ++over;
    }
    m2 /= static_cast<double>(n);
    m4 /= static_cast<double>(n);
    a.excess_kurtosis = m2 > 0 ? m4 / (m2 * m2) - 3.0 : 0;
    a.frac_over_6 = static_cast<double>(over) / static_cast<double>(n);
  }
  return a;
}

uint64_t stored_bytes(const xq_quant_tensor& q) {
  const uint64_t codes = static_cast<uint64_t>(q.rows) * static_cast<uint64_t>(q.cols) * q.bits / 8;
  const uint64_t n_scales = q.strategy == XQ_STRATEGY_TENSOR ? 1 : static_cast<uint64_t>(q.rows * q.n_groups);
  return codes + n_scales * dtype_size(q.scale_dtype) + (q.zero_points ? n_scales : 0);
}

// Runs one rule on the group, scores it, and restores the engine's weights
// and the feeding op exactly as they were.
class GroupTrial {
 public:
  GroupTrial(Runtime& runtime, Model& model, const ProfilePlan& plan, int layer, int g, const std::vector<int>& members,
             const LayerStats& stats)
      : runtime_(runtime), model_(model), plan_(plan), layer_(layer), g_(g), members_(members), stats_(stats) {}

  CandidateResult run(const QuantRule& rule) {
    CandidateResult c;
    c.algorithm = rule.algorithm_names();
    const LayerDesc& desc = model_.arch().layers[static_cast<size_t>(layer_)];
    LayerWeights& lw = model_.layer(layer_);
    const InputStats& in = stats_.groups[static_cast<size_t>(g_)];
    const PrevOp prev = prev_op_of(desc, lw, g_);
    const std::vector<float> prev_before = prev.values ? *prev.values : std::vector<float>();
    std::vector<std::vector<float>> saved;
    for (int li : members_) saved.push_back(lw.linears[static_cast<size_t>(li)].w);
    auto restore = [&] {
      for (size_t i = 0; i < members_.size(); ++i) lw.linears[static_cast<size_t>(members_[i])].w = saved[i];
      if (prev.values) *prev.values = prev_before;
    };
    try {
      const auto t0 = std::chrono::steady_clock::now();
      GroupResult result = quantize(rule, lw, prev);
      c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::vector<float> divisor = input_divisors(prev, prev_before, in.cols);
      double reference = 0, weight_diff = 0, weight_ref = 0;
      for (size_t i = 0; i < members_.size(); ++i) {
        QuantTensor& q = result.quant[i];
        std::vector<float> w(static_cast<size_t>(q->rows * q->cols));
        for (int64_t r = 0; r < q->rows; ++r) q.dequantize_row(r, w.data() + r * q->cols);
        if (!divisor.empty())  // undo the input rescale: compare in the original input's coordinates
          for (int64_t r = 0; r < q->rows; ++r)
            for (int64_t j = 0; j < q->cols; ++j)
              w[r * q->cols + j] = static_cast<float>(w[r * q->cols + j] / static_cast<double>(divisor[j]));
        // A MoE expert's gate/up is scored on the tokens routed to it (its
        // statistics-only group), as the runner quantizes it.
        const std::vector<float>& h = stats_.for_linear(members_[i]).hessian;
        c.output_error += weighted_error(saved[i], &w, h, q->rows, q->cols);
        for (size_t e = 0; e < w.size(); ++e) {
          const double d = static_cast<double>(saved[i][e]) - w[e];
          weight_diff += d * d;
          weight_ref += static_cast<double>(saved[i][e]) * saved[i][e];
        }
        reference += weighted_error(saved[i], nullptr, h, q->rows, q->cols);
        c.bytes += stored_bytes(q.get());
        c.weights.push_back(std::move(w));
      }
      c.input_divisor = divisor;
      c.reference_error = reference;
      c.weight_norm = weight_ref;
      c.rel_output_error = reference > 0 ? c.output_error / reference : 0;
      c.rel_weight_error = weight_ref > 0 ? weight_diff / weight_ref : 0;
      c.ok = std::isfinite(c.output_error);
      if (!c.ok) c.error = "non-finite output error";
    } catch (const Error& e) {
      c.error = e.what();
    }
    restore();
    return c;
  }

 private:
  // The same group the calibrated runner builds (pipeline/calibrated_runner.cpp).
  GroupResult quantize(const QuantRule& rule, LayerWeights& lw, const PrevOp& prev) {
    const size_t n = members_.size();
    std::vector<std::string> names(n);
    std::vector<xq_linear_stats> st(n);
    std::vector<xq_linear_input> li(n);
    for (size_t i = 0; i < n; ++i) {
      LinearWeights& w = lw.linears[static_cast<size_t>(members_[i])];
      names[i] = w.desc->module;
      WeightScheme ws = plan_.schemes.at(names[i]);
      if (rule.weights.bits == 8 && ws.bits != 8) ws = rule.weights;  // the int8 rung's own scheme
      st[i] = stats_.for_linear(members_[i]).view();  // a MoE expert: its own tokens
      li[i].struct_size = sizeof(li[i]);
      li[i].name = names[i].c_str();
      li[i].weight = sdk::f32_view(w.w, {w.desc->out, w.desc->in});
      li[i].bias = w.bias.empty() ? sdk::empty_view() : sdk::f32_view(w.bias, {w.desc->out});
      li[i].stats = &st[i];
      li[i].scheme = scheme_of(ws, rule.activations, w.desc->in, scale_dtype_for(ws, model_.config()));
    }
    // Built only for a rule that reruns its module (AWQ): its capture runs
    // the layer, for nothing in the others' trials.
    std::optional<GroupForward> forward;
    if (rule_needs_forward(runtime_, rule)) forward.emplace(model_, layer_, g_, members_, stats_);
    const std::string name = group_name(model_.arch().layers[static_cast<size_t>(layer_)], g_);
    xq_layer_group group{};
    group.struct_size = sizeof(group);
    group.name = name.c_str();
    group.n_linears = n;
    group.linears = li.data();
    group.prev_op = sdk::empty_view();
    if (prev.values)
      group.prev_op = prev.cols ? sdk::f32_view(*prev.values, {prev.rows, prev.cols})
                                  : sdk::f32_view(*prev.values, {int64_t(prev.values->size())});
    group.role = role_of(model_.arch().layers[static_cast<size_t>(layer_)], g_);
    group.forward = forward ? forward->abi() : nullptr;
    return run_stages(runtime_, rule, group);
  }

  Runtime& runtime_;
  Model& model_;
  const ProfilePlan& plan_;
  int layer_, g_;
  const std::vector<int>& members_;
  const LayerStats& stats_;
};

}  // namespace

// The lowest measured output error wins; the reason lists every number.
void choose_candidate(GroupProfile& gp) {
  std::vector<int> order;
  for (size_t i = 0; i < gp.candidates.size(); ++i)
    if (gp.candidates[i].ok) order.push_back(static_cast<int>(i));
  if (order.empty()) fail(XQ_ERR_INTERNAL, "{}: no candidate algorithm ran ({})", gp.name,
                          gp.candidates.empty() ? "none available" : gp.candidates.front().error);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return gp.candidates[a].output_error < gp.candidates[b].output_error;
  });
  gp.chosen = order.front();
  std::string why = "lowest Hessian-weighted output error:";
  for (size_t k = 0; k < order.size(); ++k)
    why += fmt::format("{} {} {:.4g} (rel {:.3g})", k ? " <=" : "", gp.candidates[order[k]].algorithm,
                       gp.candidates[order[k]].output_error, gp.candidates[order[k]].rel_output_error);
  for (const auto& c : gp.candidates)
    if (!c.ok) why += fmt::format("; {} did not run: {}", c.algorithm, c.error);
  gp.why = why;
}

// Thresholds: a static per-tensor scale is set by the largest channel, so
// what matters is how far the largest channel sits above a typical one and
// how heavy the tails are. Values as in docs/decide.md.
bool activations_have_outliers(const ActivationProfile& a, std::string* evidence) {
  constexpr double kMaxOverMedian = 20.0, kKurtosis = 10.0, kFracOver6 = 1e-3;
  const bool outliers =
      a.max_over_median_absmax > kMaxOverMedian || a.excess_kurtosis > kKurtosis || a.frac_over_6 > kFracOver6;
  if (evidence)
    *evidence = fmt::format("max/median channel absmax {:.1f} (limit {}), excess kurtosis {:.1f} (limit {}), "
                            "|x|>6 fraction {:.2g} (limit {:g})",
                            a.max_over_median_absmax, kMaxOverMedian, a.excess_kurtosis, kKurtosis, a.frac_over_6,
                            kFracOver6);
  return outliers;
}

void set_group_weights(Model& model, const GroupProfile& g, const std::vector<std::vector<float>>& weights) {
  LayerWeights& lw = model.layer(g.layer);
  for (size_t i = 0; i < g.linears.size(); ++i) {
    auto& w = lw.linears[static_cast<size_t>(g.linears[i])].w;
    if (weights[i].size() != w.size()) fail(XQ_ERR_INTERNAL, "{}: weight size mismatch", g.modules[i]);
    std::copy(weights[i].begin(), weights[i].end(), w.begin());
  }
}

std::vector<GroupProfile> profile_groups(Runtime& runtime, Model& model, std::vector<std::vector<int32_t>> samples,
                                         const ProfilePlan& plan, uint64_t seed) {
  // A dense layer's groups are the four of kRoles; a MoE layer has mlp_in
  // (every expert's gate/up, the shared expert's), one per expert's down and
  // the shared down (moe_groups.hpp merges them into one decision).
  uint32_t needs = XQ_NEED_HESSIAN | XQ_NEED_ABSMAX | XQ_NEED_SAMPLES;
  for (const auto& r : plan.candidates) needs |= rule_needs(runtime, r);
  std::vector<GroupProfile> out;
  auto profile_group = [&](int layer, int g, LayerStats& stats, LayerWeights& lw) {
    auto it = plan.members.find({layer, g});
    if (it == plan.members.end()) return;
    GroupProfile gp;
    gp.layer = layer;
    gp.group = g;
    gp.name = group_name(model.arch().layers[static_cast<size_t>(layer)], g);
    gp.linears = it->second;
    for (int li : gp.linears) {
      const LinearWeights& w = lw.linears[static_cast<size_t>(li)];
      gp.modules.push_back(w.desc->module);
      gp.params += static_cast<uint64_t>(w.desc->out * w.desc->in);
      gp.dense_bytes += static_cast<uint64_t>(w.desc->out * w.desc->in) * 2;  // the bf16 rung
    }
    gp.activations = activation_profile(stats.groups[static_cast<size_t>(g)]);
    if (plan.w8a8) {
      gp.input_absmax = stats.groups[static_cast<size_t>(g)].absmax;
      gp.act_scale_dtype = scale_dtype_for(plan.schemes.at(gp.modules.front()), model.config());
      gp.dynamic_activations = !plan.static_w8a8;
    }
    GroupTrial trial(runtime, model, plan, layer, g, gp.linears, stats);
    for (const auto& rule : plan.candidates) gp.candidates.push_back(trial.run(rule));
    choose_candidate(gp);
    if (plan.want_int8) gp.int8 = trial.run(plan.int8);
    if (!plan.keep_weights) {
      for (auto& c : gp.candidates) std::vector<std::vector<float>>().swap(c.weights);
      std::vector<std::vector<float>>().swap(gp.int8.weights);
    }
    if (plan.static_w8a8 && activations_have_outliers(gp.activations, &gp.activation_why)) {
      gp.dynamic_activations = true;
      gp.activation_why = "static per-tensor activation scale refused: " + gp.activation_why +
                          "; dynamic per-token instead";
    } else if (plan.static_w8a8) {
      gp.activation_why = "static per-tensor activation scale kept: " + gp.activation_why;
    }
    logger().info("decide: {}: {} -> {}{}", gp.name, gp.why, gp.candidates[gp.chosen].algorithm,
                  gp.activation_why.empty() ? "" : "; " + gp.activation_why);
    out.push_back(std::move(gp));
  };
  // Every trial restores the group's weights (and the op feeding it), so
  // each group's inputs are the float model's whatever order the groups run
  // in: one statistics pass per layer for all its groups (plus the pass
  // that carries the layer's output on), not GPTQ's one pass per group.
  CalibrationOptions co;
  co.sequential_groups = false;
  co.propagate_updated = true;  // the callback's trials re-run the layer from its kept input (AWQ's loss)
  co.seed = seed;
  // One callback per layer with every group's statistics (experts_per_pass
  // chunks only the sequential mode's gate/up stage).
  co.moe = plan.moe;
  LayerwiseCalibrator calibrator(model, std::move(samples));
  calibrator.run(
      needs,
      [&](int layer, LayerStats& stats, LayerWeights& lw) {
        for (size_t g = 0; g < stats.groups.size(); ++g) profile_group(layer, static_cast<int>(g), stats, lw);
      },
      co);
  return out;
}

}  // namespace xquant::decide
