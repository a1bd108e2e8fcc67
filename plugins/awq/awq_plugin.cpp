// awq_plugin.cpp: the `awq` algorithm plugin, activation-aware weight
// quantization (AWQ, arXiv 2306.00978; AutoAWQ quantizer.py / llm-awq auto_scale.py,
// auto_clip.py). Per layer group (linears sharing an input, fed by prev op):
//
// 1. Scale search (only when the group has a prev op to fold into):
//    x_mean[j] = mean |x_j| (stats.mean_abs; the token-weighted mean of the
//    distinct statistics of a MoE group's experts); w_mean[j] = mean over all rows
//    of all linears of |W[r, j]| / (max |W| of its quantization group + 1e-6);
//    y_ref = the compared module's output (group->forward) with FP weights;
//    for ratio = i / n_grid, i = 0..n_grid-1:
//      s = x_mean^ratio / (w_mean^(1-ratio) + 1e-4)   (duo scaling; else x_mean^ratio)
//      s = max(s, 1e-4);  s /= sqrt(max(s) * min(s))
//      loss = mean (y_ref - module(Q(W * s) / s))^2
//    plus the identity s = 1 evaluated first (as llm-compressor does), so
//    the result is never worse than not scaling. Keep the best s.
// 2. Apply: prev op /= s (a 1-D norm weight, or the OUTPUT rows of a
//    previous Linear given as a 2-D [cols, *] view), W[:, j] *= s_j.
// 3. Clip search for every linear except q/k projections: on ~clip_tokens
//    input rows (stats.samples / s, strided), for each (row, group) try
//    max_val = max|w| * (1 - i/clip_n_grid), i < clip_max_shrink * clip_n_grid,
//    clamp, fake-quantize, and keep the max_val that minimises
//    mean_t (sum_{c in group} x_tc (q_rc - w_rc))^2; clamp W to it.
// 4. Quantize with RTN under the rule's scheme (default W4 g128 asymmetric
//    comes from the rule), or with `quantize: false` stop after 3
//    (transform-only: codes left NULL for the rule's next algorithm).
//
// Q is the compressed-tensors quantizer of sdk/quantizer.hpp (the one that
// writes the checkpoint), not AutoAWQ's raw min/max one, so the search
// optimises exactly what is stored.
#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/quantizer.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace xquant::sdk;

struct Options {
  int64_t n_grid = 20;
  bool duo_scaling = true;
  bool clip = true;
  double clip_max_shrink = 0.5;
  int64_t clip_n_grid = 20;
  int64_t clip_tokens = 512;
  bool quantize = true;
};

// AutoAWQ skips the clip search for q and k: their errors are judged by the
// attention scores, not by their own outputs (names containing q_, k_,
// query, key or a fused qkv).
bool is_query_or_key(const char* name) {
  std::string s = name ? name : "";
  const size_t dot = s.rfind('.');
  if (dot != std::string::npos) s = s.substr(dot + 1);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s.rfind("q_", 0) == 0 || s.rfind("k_", 0) == 0 || s.find("query") != std::string::npos ||
         s.find("key") != std::string::npos || s.find("qkv") != std::string::npos;
}

class AwqAlgorithm : public PluginBase {
 public:
  using PluginBase::PluginBase;

  uint32_t needs(const KvReader&) { return XQ_NEED_MEAN_ABS | XQ_NEED_SAMPLES | XQ_NEED_ABSMAX; }

  void quantize(const KvReader& params, xq_layer_group& group, xq_linear_output* outs) {
    Options o;
    o.n_grid = params.get_int("n_grid", 20);
    o.duo_scaling = params.get_bool("duo_scaling", true);
    o.clip = params.get_bool("clip", true);
    o.clip_max_shrink = params.get_float("clip_max_shrink", 0.5);
    o.clip_n_grid = params.get_int("clip_n_grid", 20);
    o.clip_tokens = params.get_int("clip_tokens", 512);
    o.quantize = params.get_bool("quantize", true);
    if (o.n_grid < 1 || o.clip_n_grid < 1 || o.clip_tokens < 1 || !(o.clip_max_shrink >= 0 && o.clip_max_shrink < 1))
      fail(XQ_ERR_INVALID_ARGUMENT,
           format("%s: awq needs n_grid, clip_n_grid, clip_tokens >= 1 and 0 <= clip_max_shrink < 1", group.name));
    if (group.n_linears == 0) fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the group has no linears", group.name));
    for (uint64_t i = 0; i < group.n_linears; ++i) quant::check_weight(group.linears[i]);
    const int64_t cols = group.linears[0].weight.shape[1];
    std::vector<quant::Scheme> schemes;
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      const xq_linear_input& in = group.linears[i];
      if (in.weight.shape[1] != cols)
        fail(XQ_ERR_INVALID_ARGUMENT, format("%s: %s has %lld inputs, %s has %lld; an AWQ group shares its input",
                                             group.name, in.name, static_cast<long long>(in.weight.shape[1]),
                                             group.linears[0].name, static_cast<long long>(cols)));
      if (!in.stats || !in.stats->mean_abs || in.stats->cols != cols)
        fail(XQ_ERR_INVALID_ARGUMENT,
             format("%s: awq needs calibration (mean |x| of the %lld inputs); none was given", in.name,
                    static_cast<long long>(cols)));
      schemes.push_back(quant::scheme_from(in.scheme, in.name));
    }

    std::vector<float> s(static_cast<size_t>(cols), 1.0f);
    const bool has_prev = group.prev_op.data != nullptr;
    if (has_prev) {
      check_prev(group, cols);
      if (!group.forward || !group.forward->run)
        fail(XQ_ERR_INVALID_ARGUMENT,
             format("%s: awq needs calibration (the host's forward of the compared module); none was given",
                    group.name));
      s = search_scales(group, schemes, o, cols);
      fold_into_prev_op(group, s, cols);
    } else {
      host.debug(format("%s: no prev op to fold scales into; clip and quantize only", group.name));
    }

    const bool skip_qk = group.role && std::string(group.role) == "attn_qkv";
    auto clipped = [&](uint64_t i) {
      return o.clip && !(skip_qk && is_query_or_key(group.linears[i].name)) &&
             schemes[i].strategy != XQ_STRATEGY_TENSOR;
    };
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      const xq_linear_input& in = group.linears[i];
      if (clipped(i) && (!in.stats->samples || in.stats->n_samples <= 0))
        fail(XQ_ERR_INVALID_ARGUMENT,
             format("%s: the awq clip search needs sampled input rows; none were given (or set clip: false)", in.name));
    }
    // Linear by linear: scaled in place, clipped, quantized against its
    // original (rel_error is in the unscaled basis), so one Linear's
    // original is held at a time, not the group's (a MoE layer's gate/up
    // group is 2 x n_experts Linears: 1.6 GB on Qwen3-30B-A3B's shapes).
    // The same arithmetic, element by element, as scaling the whole group
    // first. A minute of clipping and quantizing on a small machine for such
    // a group: reported like the search.
    uint64_t steps = o.quantize ? group.n_linears : 0, done = 0;
    for (uint64_t i = 0; i < group.n_linears; ++i) steps += clipped(i) ? 1 : 0;
    std::vector<float> original;
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      const xq_linear_input& in = group.linears[i];
      float* w = static_cast<float*>(in.weight.data);
      if (o.quantize) original.assign(w, w + in.weight.shape[0] * cols);
      if (has_prev) scale_columns(in, s, cols);
      if (clipped(i)) {
        clip_linear(in, schemes[i], s, o, cols);
        host.progress("awq clip search and quantization", ++done, steps);
      }
      if (!o.quantize) {
        outs[i].rel_error = 0.0;  // transform-only
        continue;
      }
      quantize_one(in, schemes[i], s, original.data(), cols, outs[i]);
      host.progress("awq clip search and quantization", ++done, steps);
    }
  }

 private:
  static void check_prev(const xq_layer_group& group, int64_t cols) {
    const xq_tensor_view& p = group.prev_op;
    if (p.dtype != XQ_DTYPE_F32 || (p.ndim != 1 && p.ndim != 2) || p.shape[0] != cols)
      fail(XQ_ERR_INVALID_ARGUMENT,
           format("%s: prev op must be F32 [%lld] (a norm) or [%lld, in] (a previous Linear's weight)", group.name,
                  static_cast<long long>(cols), static_cast<long long>(cols)));
  }

  // w_mean[j]: |W| normalised by its quantization group's max, averaged over
  // all rows of all linears (AutoAWQ / llm-compressor _compute_layer_means).
  std::vector<double> weight_means(const xq_layer_group& group, const std::vector<quant::Scheme>& schemes,
                                   int64_t cols) const {
    std::vector<double> sum(static_cast<size_t>(cols), 0.0);
    int64_t total_rows = 0;
    for (uint64_t i = 0; i < group.n_linears; ++i) {
      const float* w = static_cast<const float*>(group.linears[i].weight.data);
      const int64_t rows = group.linears[i].weight.shape[0];
      const quant::Scheme& sc = schemes[i];
      if (sc.strategy == XQ_STRATEGY_TENSOR) {
        float m = 0.0f;
        for (int64_t e = 0; e < rows * cols; ++e) m = std::max(m, std::fabs(w[e]));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < cols; ++j) sum[j] += std::fabs(w[r * cols + j]) / (m + 1e-6f);
      } else {
        // Column groups over the threads: each column still sums its rows
        // in order (the same doubles as one thread).
        const int64_t gs = sc.group_cols(cols);
        host.parallel_for(static_cast<uint64_t>(sc.groups(cols)), 1, [&](uint64_t g0, uint64_t g1) {
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c0 = static_cast<int64_t>(g0) * gs; c0 < std::min(cols, static_cast<int64_t>(g1) * gs);
                 c0 += gs) {
              const int64_t n = std::min(gs, cols - c0);
              float m = 0.0f;
              for (int64_t j = 0; j < n; ++j) m = std::max(m, std::fabs(w[r * cols + c0 + j]));
              for (int64_t j = 0; j < n; ++j) sum[c0 + j] += std::fabs(w[r * cols + c0 + j]) / (m + 1e-6f);
            }
        });
      }
      total_rows += rows;
    }
    for (auto& v : sum) v /= static_cast<double>(total_rows);
    return sum;
  }

  // out = Q(w * s) / s for w [rows, cols] (a scale-search trial). Channel
  // and group schemes: each block of rows scaled, fake-quantized and
  // unscaled by one thread while it is in cache (a MoE mlp_in group trial
  // covers every expert's gate/up: 400 M weights on Qwen3-30B-A3B).
  void scaled_fake_quantize(const quant::Scheme& sc, const float* w, int64_t rows, int64_t cols,
                            const std::vector<float>& s, float* out) const {
    auto scale = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < cols; ++j) out[r * cols + j] = w[r * cols + j] * s[j];
    };
    auto unscale = [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = 0; j < cols; ++j) out[r * cols + j] /= s[j];
    };
    if (sc.strategy == XQ_STRATEGY_TENSOR) {  // one scale over the whole matrix
      scale(0, rows);
      quant::fake_quantize(host, sc, out, rows, cols, out);
      unscale(0, rows);
      return;
    }
    host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
      const auto r0 = static_cast<int64_t>(b), r1 = static_cast<int64_t>(e);
      scale(r0, r1);
      quant::rtn_rows(sc, out, cols, r0, r1, nullptr, nullptr, nullptr, out);
      unscale(r0, r1);
    });
  }

  std::vector<float> run_forward(const xq_layer_group& group, const std::vector<const float*>& weights) {
    const xq_group_forward& f = *group.forward;
    std::vector<float> y(static_cast<size_t>(f.n_tokens * f.out_features));
    xq_status st = f.run(f.ctx, weights.data(), y.data());
    if (st != XQ_OK) fail(st, format("%s: the host's forward of the compared module failed", group.name));
    return y;
  }

  std::vector<float> search_scales(const xq_layer_group& group, const std::vector<quant::Scheme>& schemes,
                                   const Options& o, int64_t cols) {
    const xq_group_forward& f = *group.forward;
    if (f.n_tokens <= 0 || f.out_features <= 0)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the forward runs on %lld tokens with %lld outputs", group.name,
                                           static_cast<long long>(f.n_tokens), static_cast<long long>(f.out_features)));
    if (f.in_features != cols)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: the forward's input width %lld differs from the linears' %lld",
                                           group.name, static_cast<long long>(f.in_features),
                                           static_cast<long long>(cols)));
    const uint64_t n = group.n_linears;
    std::vector<const float*> fp(n);
    for (uint64_t i = 0; i < n; ++i) fp[i] = static_cast<const float*>(group.linears[i].weight.data);
    const std::vector<float> y_ref = run_forward(group, fp);

    // mean |x_j| over the group's input: linears of a dense group share one
    // statistics set; a MoE mlp_in group's experts each see their routed
    // tokens, so the distinct sets are averaged weighted by their tokens.
    std::vector<double> x_mean(static_cast<size_t>(cols), 0.0);
    std::vector<const float*> seen;
    double total = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const xq_linear_stats& st = *group.linears[i].stats;
      if (std::find(seen.begin(), seen.end(), st.mean_abs) != seen.end()) continue;
      seen.push_back(st.mean_abs);
      const double w = seen.size() == 1 && st.tokens == 0 ? 1.0 : static_cast<double>(st.tokens);
      for (int64_t j = 0; j < cols; ++j) x_mean[j] += w * st.mean_abs[j];
      total += w;
    }
    for (auto& v : x_mean) v = total > 0 ? v / total : v;
    const std::vector<double> w_mean = o.duo_scaling ? weight_means(group, schemes, cols) : std::vector<double>();

    // Not zero-filled (make_unique_for_overwrite): every trial writes all of
    // it before the forward reads it, and a MoE mlp_in group's is 1.6 GB.
    std::vector<std::unique_ptr<float[]>> scratch(n);
    std::vector<const float*> trial(n);
    for (uint64_t i = 0; i < n; ++i) {
      scratch[i] = std::make_unique_for_overwrite<float[]>(static_cast<size_t>(group.linears[i].weight.shape[0] * cols));
      trial[i] = scratch[i].get();
    }
    auto loss_of = [&](const std::vector<float>& s) {
      for (uint64_t i = 0; i < n; ++i) scaled_fake_quantize(schemes[i], fp[i], group.linears[i].weight.shape[0], cols,
                                                            s, scratch[i].get());
      const std::vector<float> y = run_forward(group, trial);
      double acc = 0;
      for (size_t e = 0; e < y.size(); ++e) {
        const double d = static_cast<double>(y_ref[e]) - y[e];
        acc += d * d;
      }
      return acc / static_cast<double>(y.size());
    };

    std::vector<float> best(static_cast<size_t>(cols), 1.0f);
    double best_loss = loss_of(best);  // identity first
    const double identity_loss = best_loss;
    double best_ratio = -1;  // -1: identity
    if (!std::isfinite(best_loss)) best_loss = std::numeric_limits<double>::infinity();
    std::vector<float> s(static_cast<size_t>(cols));
    for (int64_t g = 0; g < o.n_grid; ++g) {
      const double ratio = static_cast<double>(g) / static_cast<double>(o.n_grid);
      double smax = 0, smin = std::numeric_limits<double>::infinity();
      std::vector<double> sd(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j) {
        double v = o.duo_scaling ? std::pow(x_mean[j], ratio) / (std::pow(w_mean[j], 1.0 - ratio) + 1e-4)
                                 : std::pow(x_mean[j], ratio);
        v = std::max(v, 1e-4);
        sd[j] = v;
        smax = std::max(smax, v);
        smin = std::min(smin, v);
      }
      const double norm = std::sqrt(smax * smin);
      for (int64_t j = 0; j < cols; ++j) {
        const float v = static_cast<float>(sd[j] / norm);
        s[j] = std::isfinite(v) && v > 0.0f ? v : 1.0f;
      }
      const double loss = loss_of(s);
      host.progress("awq scale search", static_cast<uint64_t>(g + 1), static_cast<uint64_t>(o.n_grid));
      if (std::isfinite(loss) && loss < best_loss) {
        best_loss = loss;
        best = s;
        best_ratio = ratio;
      }
    }
    if (!std::isfinite(best_loss))
      fail(XQ_ERR_INVALID_ARGUMENT,
           format("%s: no finite loss in the AWQ scale search (NaN or inf in the module's output?)", group.name));
    host.debug(format("%s: AWQ best ratio %s, loss %.6g (identity %.6g)", group.name,
                      best_ratio < 0 ? "identity" : format("%.2f", best_ratio).c_str(), best_loss, identity_loss));
    return best;
  }

  // The prev op (a norm, or a previous Linear's output rows) divided by s.
  static void fold_into_prev_op(xq_layer_group& group, const std::vector<float>& s, int64_t cols) {
    xq_tensor_view& p = group.prev_op;
    float* pd = static_cast<float*>(p.data);
    if (p.ndim == 1) {
      for (int64_t j = 0; j < cols; ++j) pd[j] /= s[j];
    } else {  // a previous Linear [cols, in]: its output row j feeds input column j
      const int64_t in = p.shape[1];
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t c = 0; c < in; ++c) pd[j * in + c] /= s[j];
    }
  }

  // One Linear's input column j times s[j], in place.
  void scale_columns(const xq_linear_input& in, const std::vector<float>& s, int64_t cols) const {
    float* w = static_cast<float*>(in.weight.data);
    host.parallel_for(static_cast<uint64_t>(in.weight.shape[0]), 64, [&](uint64_t r0, uint64_t r1) {
      for (auto r = static_cast<int64_t>(r0); r < static_cast<int64_t>(r1); ++r)
        for (int64_t j = 0; j < cols; ++j) w[r * cols + j] *= s[j];
    });
  }

  // The clip search of one (already scaled) linear; clamps its weight in place.
  void clip_linear(const xq_linear_input& in, const quant::Scheme& sc, const std::vector<float>& s, const Options& o,
                   int64_t cols) {
    const xq_host_api* api = host.api();
    const int64_t rows = in.weight.shape[0];
    float* w = static_cast<float*>(in.weight.data);
    const int64_t gs = sc.group_cols(cols), ng = sc.groups(cols);
    // Tokens: every step-th sample (AutoAWQ's n_sample_token stride), scaled by 1/s.
    const int64_t ns = in.stats->n_samples;
    const int64_t step = std::max<int64_t>(1, ns / o.clip_tokens);
    const int64_t T = (ns + step - 1) / step;
    const int64_t n_shrink = static_cast<int64_t>(o.clip_max_shrink * static_cast<double>(o.clip_n_grid));
    if (n_shrink <= 1) return;  // only i = 0 (no clipping) would be tried

    std::vector<float> xg(static_cast<size_t>(T * gs)), gram(static_cast<size_t>(gs * gs)),
        d(static_cast<size_t>(rows * gs)), dg(static_cast<size_t>(rows * gs)), org_max(static_cast<size_t>(rows)),
        best_max(static_cast<size_t>(rows));
    std::vector<double> best_err(static_cast<size_t>(rows));
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t c0 = g * gs, n = std::min(gs, cols - c0);
      host.parallel_for(static_cast<uint64_t>(T), 64, [&](uint64_t t0, uint64_t t1) {
        for (auto t = static_cast<int64_t>(t0); t < static_cast<int64_t>(t1); ++t)
          for (int64_t j = 0; j < n; ++j) xg[t * n + j] = in.stats->samples[(t * step) * cols + c0 + j] / s[c0 + j];
      });
      // AutoAWQ's error of a row r of the group (auto_clip.py: the mean over the
      // tokens of the squared partial dot (x_t . d_r), d_r the row's clipped and
      // quantized segment minus the original) is d_r^T G d_r with
      // G = Xg^T Xg / T, the tokens' mean outer product: G once per group, then
      // each shrink costs rows * n^2 instead of T * rows * n (T up to
      // clip_tokens = 512, n the group size).
      xq_status st = api->ssyrk(api->ctx, n, T, 1.0f / static_cast<float>(T), xg.data(), n, 0.0f, gram.data(), n);
      if (st != XQ_OK) fail(st, format("%s: the AWQ clip search's ssyrk failed", in.name));
      for (int64_t r = 0; r < rows; ++r) {
        float m = 0.0f;
        for (int64_t j = 0; j < n; ++j) m = std::max(m, std::fabs(w[r * cols + c0 + j]));
        org_max[r] = m;
        best_max[r] = m;
        best_err[r] = std::numeric_limits<double>::infinity();
      }
      for (int64_t i = 0; i < n_shrink; ++i) {
        const float shrink = 1.0f - static_cast<float>(i) / static_cast<float>(o.clip_n_grid);
        host.parallel_for(static_cast<uint64_t>(rows), 32, [&](uint64_t rb, uint64_t re) {
          std::vector<float> tmp(static_cast<size_t>(n));
          for (int64_t r = static_cast<int64_t>(rb); r < static_cast<int64_t>(re); ++r) {
            const float mv = org_max[r] * shrink;
            const float* src = w + r * cols + c0;
            for (int64_t j = 0; j < n; ++j) tmp[j] = std::clamp(src[j], -mv, mv);
            quant::Params p = quant::choose_span(sc, tmp.data(), n);
            quant::quantize_span(tmp.data(), n, p, sc.qmin(), sc.qmax(), nullptr, tmp.data());
            for (int64_t j = 0; j < n; ++j) d[r * n + j] = tmp[j] - src[j];
          }
        });
        // DG[rows, n] = D[rows, n] * G (G symmetric), then each row's d_r . (G d_r).
        st = api->sgemm(api->ctx, 0, 0, rows, n, n, 1.0f, d.data(), n, gram.data(), n, 0.0f, dg.data(), n);
        if (st != XQ_OK) fail(st, format("%s: the AWQ clip search's sgemm failed", in.name));
        host.parallel_for(static_cast<uint64_t>(rows), 64, [&](uint64_t rb, uint64_t re) {
          for (auto r = static_cast<int64_t>(rb); r < static_cast<int64_t>(re); ++r) {
            double err = 0.0;
            for (int64_t j = 0; j < n; ++j) err += static_cast<double>(d[r * n + j]) * dg[r * n + j];
            if (err < best_err[r]) {
              best_err[r] = err;
              best_max[r] = org_max[r] * shrink;
            }
          }
        });
      }
      for (int64_t r = 0; r < rows; ++r) {
        float* row = w + r * cols + c0;
        for (int64_t j = 0; j < n; ++j) row[j] = std::clamp(row[j], -best_max[r], best_max[r]);
      }
    }
  }

  void quantize_one(const xq_linear_input& in, const quant::Scheme& sc, const std::vector<float>& s,
                    const float* original, int64_t cols, xq_linear_output& out) {
    const int64_t rows = in.weight.shape[0];
    const float* w = static_cast<const float*>(in.weight.data);
    std::vector<float> deq(static_cast<size_t>(rows * cols));
    QuantTensor owner(host);  // frees the buffers if anything below throws
    xq_quant_tensor& q = owner.get();
    quant::rtn_matrix(host, sc, in.scheme, w, rows, cols, q, deq.data());
    quant::ErrorSums e;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const double ref = original[r * cols + j];
        const double dd = ref - deq[r * cols + j] / s[j];
        e.diff2 += dd * dd;
        e.ref2 += ref * ref;
      }
    out.quant = owner.release();
    out.rel_error = e.rel();
  }
};

constexpr xq_param_spec kParams[] = {
    {"n_grid", XQ_VALUE_INT, "20", "scale-search grid: ratio = i / n_grid, i < n_grid (plus the identity)"},
    {"duo_scaling", XQ_VALUE_BOOL, "true", "s = x_mean^r / (w_mean^(1-r) + 1e-4) (AutoAWQ); false: s = x_mean^r"},
    {"clip", XQ_VALUE_BOOL, "true", "run the weight clip search (never on q/k projections)"},
    {"clip_max_shrink", XQ_VALUE_FLOAT, "0.5", "clip search tries max|w| * (1 - i/clip_n_grid) for i < this * clip_n_grid"},
    {"clip_n_grid", XQ_VALUE_INT, "20", "clip search grid"},
    {"clip_tokens", XQ_VALUE_INT, "512", "input rows the clip search uses (strided over the samples)"},
    {"quantize", XQ_VALUE_BOOL, "true",
     "true: scale, clip and RTN-quantize; false: scale and clip only (transform-only, codes left NULL)"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr const char* kCapabilities[] = {"bits:2-8",          "symmetric",           "asymmetric",
                                         "strategy:channel", "strategy:group", "transform",
                                         "needs:forward",     "scheme-default:symmetric=false",
                                         "scheme-default:group_size=128", nullptr};

constexpr xq_plugin_descriptor kDescriptor = describe<AwqAlgorithm>(
    XQ_PLUGIN_ALGORITHM, "awq", "1.0.0",
    "AWQ: activation-aware per-channel scale search (duo scaling) and weight clipping, then RTN", kCapabilities,
    kParams, &AlgorithmAdapter<AwqAlgorithm>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
