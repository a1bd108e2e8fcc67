// calibrator.cpp: layer-by-layer calibration capture (see calibrator.hpp).
#include "calibrate/calibrator.hpp"

#include "calibrate/input_checks.hpp"
#include "calibrate/routed_expert_inputs.hpp"
#include "calibrate/statistics_accumulator.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#ifdef __GLIBC__
#include <malloc.h>
#endif
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

// After a MoE layer's gate/up statistics of experts [begin, end) are
// accumulated: which of them keep their routed-token statistics and which
// take the all-token ones (MoeCalibration's rule).
std::vector<ExpertCalibration> choose_expert_statistics(const LayerDesc& desc, int layer, const MoeCalibration& rule,
                                                        LayerStats& stats, int64_t begin, int64_t end) {
  const MoeDesc& m = desc.experts;
  const uint64_t floor = static_cast<uint64_t>(std::max<int64_t>(1, rule.min_tokens));
  std::vector<ExpertCalibration> out;
  for (int64_t e = begin; e < end; ++e) {
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
    }
    if (c.all_tokens) {
      stats.stats_source[g] = LayerDesc::kMlpIn;
      stats.groups[g] = InputStats{};  // the routed statistics are not used: free them
    }
    out.push_back(std::move(c));
  }
  return out;
}

void log_fallbacks(int layer, const std::vector<ExpertCalibration>& experts) {
  const auto fallbacks = std::count_if(experts.begin(), experts.end(), [](const auto& e) { return e.all_tokens; });
  if (fallbacks) logger().info("calibration: layer {}: {} of {} experts on all-token statistics", layer, fallbacks, experts.size());
}

// glibc keeps the heap pages a released layer freed (its F32 weights and
// statistics are blocks under the mmap threshold, which glibc raises up to
// 32 MiB after the first large free: mallopt(3) M_MMAP_THRESHOLD), and the
// next layer's allocations do not reuse all of them. Measured on
// Qwen3-30B-A3B-shaped layers: peak RssAnon +0.42 GB per extra layer
// without this, +0.01 GB with it (docs/algorithms.md "Memory").
void return_freed_heap_to_system() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

uint64_t held_bytes(const LayerStats& stats) {
  uint64_t b = 0;
  for (const auto& g : stats.groups) b += held_bytes(g);
  return b;
}

// How far a statistics pass whose outputs are thrown away runs the layer:
// to the last input a group of the pass taps (Model's LayerPart::To*).
// Sequential calibration's pass for attn_in needs the input norm only, the
// one for mlp_in no expert at all, the one for the down projections no
// down projection: on a MoE layer that skips 2 of every 3 expert GEMMs of
// the passes before the last (docs/pipeline.md "Statistics passes").
LayerPart statistics_pass_part(const LayerDesc& desc, const std::function<bool(size_t)>& in_pass) {
  // Ascending reach; a group's reach is the part through its tap.
  static constexpr LayerPart kReach[] = {LayerPart::ToAttentionInput, LayerPart::Attention, LayerPart::ToMlpInput,
                                         LayerPart::ToDownInputs};
  size_t furthest = 0;
  for (size_t g = 0; g < desc.groups.size(); ++g) {
    if (!in_pass(g)) continue;
    // Every other group (down projections; MoE: an expert's gathered
    // gate/up rows, tapped inside the block) is read inside the MLP.
    const size_t reach = g == LayerDesc::kAttnIn ? 0 : g == LayerDesc::kAttnOut ? 1 : g == LayerDesc::kMlpIn ? 2 : 3;
    furthest = std::max(furthest, reach);
  }
  return kReach[furthest];
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

void LayerwiseCalibrator::init_accumulator(StatisticsAccumulator& acc, LayerStats& stats, int layer, size_t g,
                                           uint32_t needs, const CalibrationOptions& options) const {
  const LayerDesc& desc = *stats.desc;
  const int64_t cols = desc.linears[static_cast<size_t>(desc.groups[g].linears.front())].in;
  // The seed depends on the layer and group only (resume_checkpoint.hpp relies on it).
  acc.init(stats.groups[g], cols, needs, options.max_sample_rows, options.seed + 7919 * (layer * 16 + g));
}

void LayerwiseCalibrator::note_held_bytes(uint64_t bytes) { peak_statistics_bytes_ = std::max(peak_statistics_bytes_, bytes); }

std::vector<ExpertCalibration> LayerwiseCalibrator::calibrate_experts_in_chunks(int layer, uint32_t needs,
                                                                                const RoutedExpertInputs& routed,
                                                                                LayerStats& stats,
                                                                                const Callback& callback,
                                                                                const CalibrationOptions& options) {
  const LayerDesc& desc = *stats.desc;
  const MoeDesc& m = desc.experts;
  const int64_t chunk = options.moe.experts_per_pass > 0 ? options.moe.experts_per_pass : m.n_experts;
  ThreadPool& pool = model_.runtime().pool();
  std::vector<ExpertCalibration> all;
  for (int64_t begin = 0; begin < m.n_experts; begin += chunk) {
    const int64_t end = std::min(m.n_experts, begin + chunk);
    for (int64_t e = begin; e < end; ++e) {
      const auto g = static_cast<size_t>(m.expert_in_group[static_cast<size_t>(e)]);
      StatisticsAccumulator acc;
      init_accumulator(acc, stats, layer, g, needs, options);
      routed.accumulate(e, acc, pool);
      acc.finish();
    }
    stats.experts = choose_expert_statistics(desc, layer, options.moe, stats, begin, end);
    note_held_bytes(held_bytes(stats) + routed.bytes());
    all.insert(all.end(), stats.experts.begin(), stats.experts.end());
    stats.experts_begin = begin;
    stats.experts_end = end;
    stats.active_group = LayerDesc::kMlpIn;
    if (callback) callback(layer, stats, model_.layer(layer));
    // Quantized: these experts' statistics are not needed again.
    for (int64_t e = begin; e < end; ++e) stats.groups[static_cast<size_t>(m.expert_in_group[static_cast<size_t>(e)])] = InputStats{};
  }
  log_fallbacks(layer, all);
  return all;
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
      // Sequential MoE gate/up stage: the experts' statistics are not
      // accumulated during the pass but afterwards, a chunk of experts at a
      // time, from the kept gate/up input (routed_expert_inputs.hpp).
      const bool experts_in_chunks = options.sequential_groups && desc.moe && active(LayerDesc::kMlpIn);
      auto in_pass = [&](size_t g) { return active(g) && !(experts_in_chunks && desc.groups[g].stats_only); };
      RoutedExpertInputs routed(model_, static_cast<int>(l));
      LayerStats stats;
      stats.layer = static_cast<int>(l);
      stats.desc = &desc;
      stats.layer_input = X.data();
      stats.offsets = &offset;
      stats.groups.resize(desc.groups.size());
      stats.stats_source.resize(desc.groups.size());
      for (size_t g = 0; g < desc.groups.size(); ++g) stats.stats_source[g] = static_cast<int>(g);
      stats.experts_end = desc.moe ? desc.experts.n_experts : 0;
      std::vector<StatisticsAccumulator> acc(desc.groups.size());
      for (size_t g = 0; g < desc.groups.size(); ++g) {
        if (!in_pass(g)) continue;
        init_accumulator(acc[g], stats, static_cast<int>(l), g, needs, options);
      }
      GroupInputTap tap = [&](int g, const float* x, int64_t rows, int64_t cols) {
        if (in_pass(static_cast<size_t>(g))) acc[static_cast<size_t>(g)].add(pool, x, rows, cols);
        if (experts_in_chunks && g == LayerDesc::kMlpIn) routed.add_sample(x, rows);
      };
      // Experts on all-token statistics tap their down_proj input over every token.
      std::vector<bool> all_token_down;
      for (const auto& e : experts) {
        all_token_down.resize(static_cast<size_t>(e.expert) + 1, false);
        all_token_down[static_cast<size_t>(e.expert)] = e.all_tokens;
      }
      model_.set_all_token_down_taps(all_token_down);
      // Statistics (and, when not propagating updates, the outputs). A pass
      // over a large model's layer takes minutes: it reports its samples.
      // When the outputs come from a pass of their own (propagate), this
      // one runs the layer only as far as its taps.
      const std::string pass_task = fmt::format("layer {} statistics, pass {} of {}", l, pass + 1, passes);
      const LayerPart part = propagate ? statistics_pass_part(desc, in_pass) : LayerPart::Whole;
      for (size_t s = 0; s < samples_.size(); ++s) {
        Progress::report(pass_task, s, samples_.size(), "samples");
        int64_t n = offset[s + 1] - offset[s];
        float* xs = X.data() + offset[s] * H;
        float* run_on = xs;
        if (propagate) {
          tmp.assign(xs, xs + n * H);
          run_on = tmp.data();
        }
        model_.layer_forward(static_cast<int>(l), run_on, n, {SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}}, tap,
                             part);
      }
      Progress::report(pass_task, samples_.size(), samples_.size(), "samples");
      model_.set_all_token_down_taps({});
      for (size_t g = 0; g < acc.size(); ++g)
        if (acc[g].st) acc[g].finish();
      note_held_bytes(held_bytes(stats) + routed.bytes());
      if (experts_in_chunks) {
        experts = calibrate_experts_in_chunks(static_cast<int>(l), needs, routed, stats, callback, options);
        continue;
      }
      if (desc.moe && active(static_cast<size_t>(desc.experts.expert_in_group.front()))) {
        experts = choose_expert_statistics(desc, static_cast<int>(l), options.moe, stats, 0, desc.experts.n_experts);
        log_fallbacks(static_cast<int>(l), experts);
      } else if (desc.moe)
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
    if (propagate) {
      const std::string output_task = fmt::format("layer {} output", l);
      for (size_t s = 0; s < samples_.size(); ++s) {
        Progress::report(output_task, s, samples_.size(), "samples");
        int64_t n = offset[s + 1] - offset[s];
        model_.layer_forward(static_cast<int>(l), X.data() + offset[s] * H, n,
                             {SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}});
      }
      Progress::report(output_task, samples_.size(), samples_.size(), "samples");
    }
    if (options.after_layer) options.after_layer(static_cast<int>(l), X);
    if (on_demand) {
      model_.release_layer(static_cast<int>(l));
      return_freed_heap_to_system();
    }
    Progress::report("calibration", static_cast<uint64_t>(l + 1), static_cast<uint64_t>(a.n_layers), "layers");
  }
}

}  // namespace xquant
