// calibrator.cpp: layer-by-layer calibration capture (see calibrator.hpp).
#include "calibrate/calibrator.hpp"

#include "calibrate/input_checks.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <cstring>
#include <random>

namespace xquant {

xq_linear_stats InputStats::view() const {
  xq_linear_stats s{};
  s.struct_size = sizeof(s);
  s.cols = cols;
  s.tokens = tokens;
  s.absmax = absmax.empty() ? nullptr : absmax.data();
  s.mean_abs = mean_abs.empty() ? nullptr : mean_abs.data();
  s.sum_sq = sum_sq.empty() ? nullptr : sum_sq.data();
  s.hessian = hessian.empty() ? nullptr : hessian.data();
  s.samples = samples.empty() ? nullptr : samples.data();
  s.n_samples = n_samples;
  return s;
}

const InputStats& LayerStats::for_linear(int linear) const {
  auto source = [&](size_t g) -> const InputStats& {
    return groups[stats_source.empty() ? g : static_cast<size_t>(stats_source[g])];
  };
  for (size_t g = 0; g < desc->groups.size(); ++g)
    if (desc->groups[g].stats_only)
      for (int l : desc->groups[g].linears)
        if (l == linear) return source(g);
  for (size_t g = 0; g < desc->groups.size(); ++g)
    for (int l : desc->groups[g].linears)
      if (l == linear) return source(g);
  fail(XQ_ERR_INVALID_ARGUMENT, "layer {} has no linear #{}", layer, linear);
}

LayerwiseCalibrator::LayerwiseCalibrator(Model& model, std::vector<std::vector<int32_t>> samples)
    : model_(model), samples_(std::move(samples)) {
  if (samples_.empty()) fail(XQ_ERR_INVALID_ARGUMENT, "calibration needs at least one sample");
  for (size_t i = 0; i < samples_.size(); ++i)
    if (samples_[i].empty()) fail(XQ_ERR_INVALID_ARGUMENT, "calibration sample #{} is empty", i);
}

std::vector<std::vector<int32_t>> LayerwiseCalibrator::samples_from_text(Model& model, const std::string& text,
                                                                         int64_t n_samples, int64_t seq_len,
                                                                         uint64_t seed) {
  if (n_samples <= 0 || seq_len <= 0) fail(XQ_ERR_INVALID_ARGUMENT, "calibration: samples and seq_len must be positive");
  const Tokenizer& tok = model.tokenizer();
  std::vector<int32_t> ids;
  int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : model.arch().bos_id;
  if (bos >= 0) ids.push_back(bos);
  auto body = tok.encode(text, false, false);
  ids.insert(ids.end(), body.begin(), body.end());
  if (ids.size() < 2) fail(XQ_ERR_INVALID_ARGUMENT, "calibration text gives fewer than 2 tokens");
  std::vector<std::vector<int32_t>> out;
  if (static_cast<int64_t>(ids.size()) <= seq_len) {
    out.push_back(ids);
    return checked_calibration_samples(model, ids, std::move(out));
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(ids.size()) - seq_len);
  for (int64_t i = 0; i < n_samples; ++i) {
    int64_t s = start(rng);
    out.emplace_back(ids.begin() + s, ids.begin() + s + seq_len);
  }
  return checked_calibration_samples(model, ids, std::move(out));
}

namespace {

// Accumulates one group's statistics over input rows (double where sums run long).
struct Accumulator {
  InputStats* st = nullptr;
  uint32_t needs = 0;
  std::vector<double> sum_abs, sum_sq;
  uint64_t seen = 0;  // rows offered to the reservoir
  std::mt19937_64 rng;
  int64_t cap = 0;

  void init(InputStats& s, int64_t cols, uint32_t n, int64_t max_rows, uint64_t seed) {
    st = &s;
    needs = n;
    s.cols = cols;
    if (n & XQ_NEED_ABSMAX) s.absmax.assign(static_cast<size_t>(cols), 0.0f);
    if (n & XQ_NEED_MEAN_ABS) sum_abs.assign(static_cast<size_t>(cols), 0.0);
    if (n & XQ_NEED_SUM_SQ) sum_sq.assign(static_cast<size_t>(cols), 0.0);
    if (n & XQ_NEED_HESSIAN) s.hessian.assign(static_cast<size_t>(cols * cols), 0.0f);
    cap = (n & XQ_NEED_SAMPLES) ? max_rows : 0;
    rng.seed(seed);
  }

  void add(ThreadPool& pool, const float* x, int64_t rows, int64_t cols) {
    st->tokens += static_cast<uint64_t>(rows);
    if (needs & (XQ_NEED_ABSMAX | XQ_NEED_MEAN_ABS | XQ_NEED_SUM_SQ)) {
      pool.parallel_for(static_cast<uint64_t>(cols), 64, [&](uint64_t b, uint64_t e) {
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = x + r * cols;
          for (uint64_t c = b; c < e; ++c) {
            float v = xr[c], a = std::fabs(v);
            if (!st->absmax.empty()) st->absmax[c] = std::max(st->absmax[c], a);
            if (!sum_abs.empty()) sum_abs[c] += a;
            if (!sum_sq.empty()) sum_sq[c] += static_cast<double>(v) * v;
          }
        }
      });
    }
    if (needs & XQ_NEED_HESSIAN)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(cols), static_cast<int>(cols),
                  static_cast<int>(rows), 1.0f, x, static_cast<int>(cols), x, static_cast<int>(cols), 1.0f,
                  st->hessian.data(), static_cast<int>(cols));
    if (cap > 0) {
      // Reservoir sampling (Algorithm R): a uniform sample of all rows seen.
      for (int64_t r = 0; r < rows; ++r, ++seen) {
        int64_t slot = -1;
        if (st->n_samples < cap) {
          slot = st->n_samples++;
          st->samples.resize(static_cast<size_t>(st->n_samples * cols));
        } else {
          std::uniform_int_distribution<uint64_t> d(0, seen);
          uint64_t j = d(rng);
          if (j < static_cast<uint64_t>(cap)) slot = static_cast<int64_t>(j);
        }
        if (slot >= 0) std::memcpy(st->samples.data() + slot * cols, x + r * cols, static_cast<size_t>(cols) * sizeof(float));
      }
    }
  }

  void finish() {
    if (!sum_abs.empty()) {
      st->mean_abs.resize(sum_abs.size());
      for (size_t c = 0; c < sum_abs.size(); ++c)
        st->mean_abs[c] = st->tokens ? static_cast<float>(sum_abs[c] / static_cast<double>(st->tokens)) : 0.0f;
    }
    if (!sum_sq.empty()) {
      st->sum_sq.resize(sum_sq.size());
      for (size_t c = 0; c < sum_sq.size(); ++c) st->sum_sq[c] = static_cast<float>(sum_sq[c]);
    }
  }
};

// After a MoE layer's gate/up pass: which experts keep their routed-token
// statistics and which take the all-token ones (MoeCalibration's rule).
std::vector<ExpertCalibration> choose_expert_statistics(const LayerDesc& desc, int layer, const MoeCalibration& rule,
                                                        LayerStats& stats) {
  const MoeDesc& m = desc.experts;
  const uint64_t floor = static_cast<uint64_t>(std::max<int64_t>(1, rule.min_tokens));
  std::vector<ExpertCalibration> out;
  int fallbacks = 0;
  for (int64_t e = 0; e < m.n_experts; ++e) {
    const auto g = static_cast<size_t>(m.expert_in_group[static_cast<size_t>(e)]);
    ExpertCalibration c{layer, static_cast<int>(e), stats.groups[g].tokens, false, ""};
    if (rule.all_experts) {
      c.all_tokens = true;
      c.why = "calibrate_all_experts";
    } else if (c.routed_tokens < floor) {
      c.all_tokens = true;
      c.why = fmt::format("{} routed tokens, fewer than min_tokens {}", c.routed_tokens, floor);
      logger().warn("calibration: layer {} expert {}: {}; its statistics come from all {} tokens", layer, e, c.why,
                    stats.groups[LayerDesc::kMlpIn].tokens);
      ++fallbacks;
    }
    if (c.all_tokens) {
      stats.stats_source[g] = LayerDesc::kMlpIn;
      stats.groups[g] = InputStats{};  // the routed statistics are not used: free them
    }
    out.push_back(std::move(c));
  }
  if (fallbacks) logger().info("calibration: layer {}: {} of {} experts on all-token statistics", layer, fallbacks, m.n_experts);
  return out;
}

}  // namespace

std::vector<float> LayerwiseCalibrator::first_hidden_states(const std::vector<int64_t>& offset,
                                                            const CalibrationOptions& options, bool propagate) const {
  const int64_t H = model_.arch().hidden;
  const auto size = static_cast<size_t>(offset.back() * H);
  if (options.first_layer < 0 || options.first_layer > model_.arch().n_layers)
    fail(XQ_ERR_INVALID_ARGUMENT, "calibration: first layer {} outside 0..{}", options.first_layer,
         model_.arch().n_layers);
  if (options.first_layer > 0) {
    if (!propagate) fail(XQ_ERR_INVALID_ARGUMENT, "calibration: starting at a later layer needs propagate_updated");
    if (!options.first_input || options.first_input->size() != size)
      fail(XQ_ERR_INVALID_ARGUMENT, "calibration: layer {}'s input holds {} values, the samples need {}",
           options.first_layer, options.first_input ? options.first_input->size() : 0, size);
    return std::move(*options.first_input);
  }
  std::vector<float> X(size);
  for (size_t s = 0; s < samples_.size(); ++s)
    model_.embed(samples_[s].data(), static_cast<int64_t>(samples_[s].size()), X.data() + offset[s] * H);
  return X;
}

void LayerwiseCalibrator::run(uint32_t needs, const Callback& callback, const CalibrationOptions& options) {
  const Architecture& a = model_.arch();
  const int64_t H = a.hidden;
  auto require_float = [&](int64_t l) {
    for (const auto& lw : model_.layer(static_cast<int>(l)).linears)
      if (lw.q)
        fail(XQ_ERR_INVALID_ARGUMENT,
             "calibration needs float weights but '{}' is held quantized by the provider; open the model with "
             "ModelOptions::dequantize_all",
             lw.desc->module);
  };
  for (int64_t l = 0; l < a.n_layers; ++l) require_float(l);  // layers on demand: empty until loaded
  // Hidden states of every sample at the current layer's input.
  std::vector<int64_t> offset(samples_.size() + 1, 0);
  int64_t max_len = 0;
  for (size_t s = 0; s < samples_.size(); ++s) {
    offset[s + 1] = offset[s] + static_cast<int64_t>(samples_[s].size());
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(samples_[s].size()));
  }
  const bool propagate = options.propagate_updated || options.sequential_groups;
  // A model opened with layers_on_demand holds one layer's F32 weights at
  // a time: the embeddings for the first hidden states, then each layer
  // from its start until after_layer has seen its output.
  const bool on_demand = model_.layers_on_demand();
  if (on_demand && options.first_layer == 0) model_.load_embeddings();
  std::vector<float> X = first_hidden_states(offset, options, propagate);
  if (on_demand) model_.release_embeddings();
  // One layer's K/V scratch for the longest sample (samples run one at a time).
  std::vector<float> kbuf(static_cast<size_t>(max_len * a.n_kv_heads * a.head_dim)), vbuf(kbuf.size());
  std::vector<float> tmp;
  ThreadPool& pool = model_.runtime().pool();

  for (int64_t l = options.first_layer; l < a.n_layers; ++l) {
    const LayerDesc& desc = a.layers[static_cast<size_t>(l)];
    if (on_demand) {
      model_.load_layer(static_cast<int>(l));
      require_float(l);
    }
    // Sequential mode: one statistics pass per stage (groups of one stage
    // do not feed each other), one callback per quantizing group of it.
    // Otherwise one pass for every group and one callback.
    std::vector<int> stages;
    for (const auto& g : desc.groups)
      if (std::find(stages.begin(), stages.end(), g.stage) == stages.end()) stages.push_back(g.stage);
    std::sort(stages.begin(), stages.end());
    const size_t passes = options.sequential_groups ? stages.size() : 1;
    std::vector<ExpertCalibration> experts;  // this layer's, from its gate/up stage on
    for (size_t pass = 0; pass < passes; ++pass) {
      auto active = [&](size_t g) { return !options.sequential_groups || desc.groups[g].stage == stages[pass]; };
      LayerStats stats;
      stats.layer = static_cast<int>(l);
      stats.desc = &desc;
      stats.layer_input = X.data();
      stats.offsets = &offset;
      stats.groups.resize(desc.groups.size());
      stats.stats_source.resize(desc.groups.size());
      for (size_t g = 0; g < desc.groups.size(); ++g) stats.stats_source[g] = static_cast<int>(g);
      std::vector<Accumulator> acc(desc.groups.size());
      for (size_t g = 0; g < desc.groups.size(); ++g) {
        if (!active(g)) continue;
        int64_t cols = desc.linears[static_cast<size_t>(desc.groups[g].linears.front())].in;
        acc[g].init(stats.groups[g], cols, needs, options.max_sample_rows, options.seed + 7919 * (l * 16 + g));
      }
      GroupInputTap tap = [&](int g, const float* x, int64_t rows, int64_t cols) {
        if (active(static_cast<size_t>(g))) acc[static_cast<size_t>(g)].add(pool, x, rows, cols);
      };
      // Experts on all-token statistics tap their down_proj input over every token.
      std::vector<bool> all_token_down;
      for (const auto& e : experts) {
        all_token_down.resize(static_cast<size_t>(e.expert) + 1, false);
        all_token_down[static_cast<size_t>(e.expert)] = e.all_tokens;
      }
      model_.set_all_token_down_taps(all_token_down);
      // Statistics (and, when not propagating updates, the outputs).
      for (size_t s = 0; s < samples_.size(); ++s) {
        int64_t n = offset[s + 1] - offset[s];
        float* xs = X.data() + offset[s] * H;
        float* run_on = xs;
        if (propagate) {
          tmp.assign(xs, xs + n * H);
          run_on = tmp.data();
        }
        model_.layer_forward(static_cast<int>(l), run_on, n, {SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}}, tap);
      }
      model_.set_all_token_down_taps({});
      for (size_t g = 0; g < acc.size(); ++g)
        if (acc[g].st) acc[g].finish();
      if (desc.moe && active(static_cast<size_t>(desc.experts.expert_in_group.front())))
        experts = choose_expert_statistics(desc, static_cast<int>(l), options.moe, stats);
      else if (desc.moe)
        for (const auto& e : experts)
          if (e.all_tokens) stats.stats_source[static_cast<size_t>(desc.experts.expert_in_group[e.expert])] = LayerDesc::kMlpIn;
      stats.experts = experts;
      if (!callback) continue;
      if (!options.sequential_groups) {
        stats.active_group = -1;
        callback(static_cast<int>(l), stats, model_.layer(static_cast<int>(l)));
        continue;
      }
      for (size_t g = 0; g < desc.groups.size(); ++g) {
        if (!active(g) || desc.groups[g].stats_only) continue;
        stats.active_group = static_cast<int>(g);
        callback(static_cast<int>(l), stats, model_.layer(static_cast<int>(l)));
      }
    }
    // The next layer's inputs through the (possibly updated) layer.
    if (propagate)
      for (size_t s = 0; s < samples_.size(); ++s) {
        int64_t n = offset[s + 1] - offset[s];
        model_.layer_forward(static_cast<int>(l), X.data() + offset[s] * H, n,
                             {SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}});
      }
    if (options.after_layer) options.after_layer(static_cast<int>(l), X);
    if (on_demand) model_.release_layer(static_cast<int>(l));
    Progress::report("calibration", static_cast<uint64_t>(l + 1), static_cast<uint64_t>(a.n_layers), "layers");
  }
}

}  // namespace xquant
