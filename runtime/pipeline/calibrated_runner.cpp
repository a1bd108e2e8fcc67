// calibrated_runner.cpp: see calibrated_runner.hpp.
#include "pipeline/calibrated_runner.hpp"

#include "calibrate/calibrator.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "engine/model.hpp"
#include "checkpoint/linear_modules.hpp"
#include "pipeline/group_forward.hpp"
#include "pipeline/moe_block_rows.hpp"
#include "pipeline/prev_op.hpp"
#include "pipeline/resume_checkpoint.hpp"
#include "pipeline/stages.hpp"

#include <xquant/sdk/half.hpp>
#include <xquant/sdk/quantizer.hpp>
#include <xquant/sdk/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

namespace xquant {

namespace {

const char* kRoles[] = {"attn_qkv", "attn_o", "mlp_gate_up", "mlp_down"};

// The role algorithms see: a MoE layer's groups after mlp_in are down_projs.
const char* role_of(const LayerDesc& desc, int g) { return desc.moe && g > LayerDesc::kMlpIn ? kRoles[3] : kRoles[g]; }

// The name of group g in logs and errors (dense layers keep their role names).
std::string group_name_of(const LayerDesc& desc, int layer, int g) {
  if (desc.moe && g > LayerDesc::kMlpIn) return desc.groups[static_cast<size_t>(g)].name;
  return fmt::format("model.layers.{}.{}", layer, kRoles[g]);
}




// A previous Linear that is already quantized had its output rows divided
// by s in the engine copy (before -> after); divide its per-row scales the
// same way so the written checkpoint stays equivalent ((q - z) * scale / s),
// then make the engine copy the exact dequantization of what is stored.
void fold_row_rescale(QuantTensor& q, const std::vector<float>& before, std::vector<float>& after, int64_t rows,
                      int64_t cols, const std::string& group_name) {
  if (q->strategy == XQ_STRATEGY_TENSOR)
    fail(XQ_ERR_UNSUPPORTED, "{}: cannot rescale the rows of a per-tensor quantized Linear", group_name);
  const int64_t ng = q->n_groups;
  for (int64_t r = 0; r < rows; ++r) {
    // 1/s_r from the row's largest element (one rounding away from exact).
    int64_t best = r * cols;
    for (int64_t c = r * cols; c < (r + 1) * cols; ++c)
      if (std::fabs(before[static_cast<size_t>(c)]) > std::fabs(before[static_cast<size_t>(best)])) best = c;
    const float b = before[static_cast<size_t>(best)], a = after[static_cast<size_t>(best)];
    if (b == 0.0f || a == 0.0f) continue;
    for (int64_t k = 0; k < ng; ++k) {
      float& sc = q->scales[r * ng + k];
      sc *= a / b;
      if (q->scale_dtype == XQ_DTYPE_F16) sc = sdk::round_to_f16(sc);
      else if (q->scale_dtype == XQ_DTYPE_BF16) sc = sdk::round_to_bf16(sc);
    }
  }
  for (int64_t r = 0; r < q->rows; ++r) q.dequantize_row(r, after.data() + r * q->cols);
}

// Writes a layer tensor: as stored when the engine's float copy still equals
// the source, else the engine's (rescaled) values in the source dtype.
void write_dense(const Checkpoint& cp, OutputWriter& writer, const TensorEntry& t, const std::vector<float>* current) {
  std::vector<float> source;
  bool changed = false;
  if (current && t.dtype != XQ_DTYPE_BLOCKS) {
    source = cp.read_f32(t);
    changed = source.size() == current->size() && !std::equal(source.begin(), source.end(), current->begin());
  }
  if (!changed && t.dtype != XQ_DTYPE_BLOCKS) {
    writer.add_dense(t.name, cp.raw(t));
    return;
  }
  const std::vector<float>& values = changed ? *current : (source = cp.read_f32(t));
  xq_dtype dt = t.dtype == XQ_DTYPE_BLOCKS ? XQ_DTYPE_F32 : t.dtype;
  if (dt != XQ_DTYPE_F32 && dt != XQ_DTYPE_F16 && dt != XQ_DTYPE_BF16) dt = XQ_DTYPE_F32;
  std::vector<uint8_t> bytes(values.size() * dtype_size(dt));
  convert_from_f32(values.data(), dt, bytes.data(), values.size());
  xq_tensor_view v{};
  v.struct_size = sizeof(v);
  v.dtype = dt;
  v.ndim = static_cast<uint32_t>(t.shape.size());
  for (size_t d = 0; d < t.shape.size(); ++d) v.shape[d] = t.shape[d];
  v.data = bytes.data();
  v.nbytes = bytes.size();
  writer.add_dense(t.name, v);
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(XQ_ERR_NOT_FOUND, "cannot read calibration text '{}'", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool static_activations(const QuantRule& rule) { return rule.activations.enabled && !rule.activations.dynamic; }

// The XQ_NEED_* statistics of every rule in use (absmax for static
// activation scales).
uint32_t statistics_needed(Runtime& runtime, const RuleAssignment& rules) {
  std::set<const QuantRule*> used;
  for (const auto& [m, a] : rules.assigned) used.insert(a.rule);
  uint32_t needs = 0;
  for (const auto* r : used) {
    needs |= rule_needs(runtime, *r);
    if (static_activations(*r)) needs |= XQ_NEED_ABSMAX;
  }
  return needs;
}

std::vector<std::vector<int32_t>> calibration_samples(Model& model, const Pipeline& p) {
  auto samples = LayerwiseCalibrator::samples_from_text(model, read_text(p.calibration.text), p.calibration.samples,
                                                        p.calibration.seq_len, p.calibration.seed);
  logger().info("calibration: {} samples x {} tokens from {}", samples.size(),
                samples.empty() ? 0 : samples.front().size(), p.calibration.text.string());
  return samples;
}

// Whether a rule quantizing some expert's gate/up runs a rescaling
// ("transform") algorithm: it needs the whole mlp_in group in one call (one
// smoothing vector for the router and every expert), so the experts cannot
// be handed over a chunk at a time.
bool transform_on_experts(Runtime& runtime, const Architecture& arch, const RuleAssignment& rules) {
  for (const auto& L : arch.layers) {
    if (!L.moe) continue;
    for (int li : L.groups[LayerDesc::kMlpIn].linears) {
      auto it = rules.assigned.find(L.linears[static_cast<size_t>(li)].module);
      if (it == rules.assigned.end()) continue;
      for (const auto& st : it->second.rule->stages)
        if (runtime.plugins().require(XQ_PLUGIN_ALGORITHM, st.name).has_capability("transform")) return true;
    }
  }
  return false;
}

// Tensors outside the decoder layers go first, as stored (lm_head only
// through a data-free rule: it has no calibrated inputs here).
void write_tensors_outside_layers(const Checkpoint& source, const Architecture& arch, const RuleAssignment& rules,
                                  OutputWriter& writer) {
  std::set<std::string> layer_tensors;
  for (const auto& L : arch.layers) {
    for (const auto& d : L.linears) {
      layer_tensors.insert(d.weight_name());
      layer_tensors.insert(d.bias_name());
    }
    for (const auto* n : {&L.input_norm, &L.post_norm, &L.q_norm, &L.k_norm})
      if (!n->empty()) layer_tensors.insert(*n);
  }
  for (const auto& t : source.tensors()) {
    if (layer_tensors.count(t.name) || t.name == "rope_freqs.weight") continue;
    std::string module = linear_module_of(t);
    if (!module.empty() && rules.assigned.count(module))
      fail(XQ_ERR_UNSUPPORTED, "'{}' is outside the decoder layers; quantize it with a data-free rule (rtn) or ignore it",
           module);
    write_dense(source, writer, t, nullptr);
  }
}


// The calibrator's callback: quantizes each Linear group of a layer with its
// rules, folds rescalings into what is already quantized, and writes the
// layer once its last group is done.
class LayerQuantizer {
 public:
  LayerQuantizer(Runtime& runtime, const Checkpoint& source, const RuleAssignment& rules, Model& model,
                 OutputWriter& writer, RunReport& report)
      : runtime_(runtime), source_(source), rules_(rules), model_(model), writer_(writer), report_(report) {}

  void on_group(int layer, LayerStats& stats, LayerWeights& lw) {
    const LayerDesc& desc = model_.arch().layers[static_cast<size_t>(layer)];
    const int g = stats.active_group;
    if (desc.moe && g == LayerDesc::kMlpIn) record_experts(stats);
    const int down_of = GroupForward::expert_of_down_group(desc, g);
    if (down_of < 0) block_rows_.reset();  // this group may change them
    for (auto& [rule, members] : members_by_rule(desc, g, stats)) quantize_group(layer, g, *rule, members, stats, lw);
    // A MoE layer's down_proj groups come one after another, one per expert:
    // each is short, together they take as long as a statistics pass.
    if (down_of >= 0)
      Progress::report(fmt::format("layer {} experts' down_proj quantized", layer), static_cast<uint64_t>(down_of + 1),
                       static_cast<uint64_t>(desc.experts.n_experts), "experts");
    if (g + 1 == desc.quant_groups()) flush_layer(desc, lw);
  }

 private:
  // The linears of group g per rule (a group may mix rules or dense ones);
  // of a MoE mlp_in, those of the callback's chunk of experts.
  std::map<const QuantRule*, std::vector<int>> members_by_rule(const LayerDesc& desc, int g,
                                                               const LayerStats& stats) const {
    std::map<const QuantRule*, std::vector<int>> by_rule;
    for (int li : desc.groups[static_cast<size_t>(g)].linears) {
      if (desc.moe && g == LayerDesc::kMlpIn && !in_chunk(desc, li, stats)) continue;
      auto it = rules_.assigned.find(desc.linears[static_cast<size_t>(li)].module);
      if (it != rules_.assigned.end()) by_rule[it->second.rule].push_back(li);
    }
    return by_rule;
  }

  // Whether linear li of a MoE mlp_in belongs to the callback's chunk: an
  // expert's gate/up to its expert's chunk, the router and shared expert
  // to the first.
  static bool in_chunk(const LayerDesc& desc, int li, const LayerStats& stats) {
    const MoeDesc& m = desc.experts;
    for (int64_t e = 0; e < m.n_experts; ++e)
      if (m.gate[static_cast<size_t>(e)] == li || m.up[static_cast<size_t>(e)] == li)
        return e >= stats.experts_begin && e < stats.experts_end;
    return stats.experts_begin == 0;
  }

  // Runs `rule`'s chain on its `members` of group g (with the op feeding
  // the group and a forward callback), folds a rescaling of an already
  // quantized previous Linear, and keeps the results.
  void quantize_group(int layer, int g, const QuantRule& rule, const std::vector<int>& members, const LayerStats& stats,
                      LayerWeights& lw) {
    const LayerDesc& desc = model_.arch().layers[static_cast<size_t>(layer)];
    const InputStats& in_stats = stats.groups[static_cast<size_t>(g)];
    const bool whole_group = members.size() == desc.groups[static_cast<size_t>(g)].linears.size();
    const PrevOp prev = prev_op_of(desc, lw, g);
    const std::vector<float> prev_before = prev.values ? *prev.values : std::vector<float>();

    GroupInputs in = group_inputs(rule, members, stats, lw);
    // The module re-run AWQ's loss needs; built only for algorithms that use
    // it (its input capture runs the module once).
    std::optional<GroupForward> forward;
    if (rule_needs_forward(runtime_, rule)) forward.emplace(model_, layer, g, members, stats, block_rows_for(layer, desc, g, stats));
    const std::string group_name = group_name_of(desc, layer, g);
    xq_layer_group group{};
    group.struct_size = sizeof(group);
    group.name = group_name.c_str();
    group.n_linears = in.linears.size();
    group.linears = in.linears.data();
    group.prev_op.struct_size = sizeof(group.prev_op);
    if (prev.values)
      group.prev_op = prev.cols ? sdk::f32_view(*prev.values, {prev.rows, prev.cols})
                                  : sdk::f32_view(*prev.values, {int64_t(prev.values->size())});
    group.role = role_of(desc, g);
    group.forward = forward ? forward->abi() : nullptr;
    GroupResult result = run_stages(runtime_, rule, group);

    const bool rescaled = prev.values && *prev.values != prev_before;
    const std::vector<float> divisor = input_divisors(prev, prev_before, in_stats.cols);
    if (rescaled && !whole_group && others_dense(desc, g, members)) {
      rescale_dense_others(desc, g, members, divisor, lw);
    } else if (rescaled && !whole_group)
      fail(XQ_ERR_UNSUPPORTED,
           "{}: '{}' rescaled the op feeding {} but only part of that group is quantized by this rule; "
           "give every Linear of the group the same rule",
           rule.mark.text(), rule.algorithm_names(), group_name);
    if (rescaled && prev.cols) fold_into_previous_op(desc, g, prev, prev_before, group_name);

    keep_quantized(rule, members, in, in_stats, divisor, result, lw);
  }

  // A MoE layer's block input and routing on AWQ's trial samples, shared by
  // its experts' down_proj groups (they run one after another and change
  // neither; on_group drops it at any other group); null for other groups.
  const MoeBlockRows* block_rows_for(int layer, const LayerDesc& desc, int g, const LayerStats& stats) {
    if (GroupForward::expert_of_down_group(desc, g) < 0) return nullptr;
    if (!block_rows_ || block_rows_->layer() != layer)
      block_rows_ = std::make_unique<MoeBlockRows>(model_, layer, stats.layer_input,
                                                   TrialSamples::choose(*stats.offsets, GroupForward::kMaxRows));
    return block_rows_.get();
  }

  // The ABI inputs of a rule's members of a group: views of the engine's
  // weights (algorithms update them in place), the group's input
  // statistics, each member's scheme.
  struct GroupInputs {
    std::vector<std::string> names;
    std::vector<WeightScheme> schemes;
    std::vector<xq_linear_stats> stats;
    std::vector<xq_linear_input> linears;  // point into the vectors above
  };
  GroupInputs group_inputs(const QuantRule& rule, const std::vector<int>& members, const LayerStats& stats,
                           LayerWeights& lw) const {
    GroupInputs in;
    in.names.resize(members.size());
    in.schemes.resize(members.size());
    in.stats.resize(members.size());
    in.linears.resize(members.size());
    for (size_t i = 0; i < members.size(); ++i) {
      LinearWeights& w = lw.linears[static_cast<size_t>(members[i])];
      in.names[i] = w.desc->module;
      in.schemes[i] = rules_.assigned.at(in.names[i]).weights;
      in.stats[i] = stats.for_linear(members[i]).view();  // a MoE expert: its own tokens
      xq_linear_input& li = in.linears[i];
      li.struct_size = sizeof(li);
      li.name = in.names[i].c_str();
      li.weight = sdk::f32_view(w.w, {w.desc->out, w.desc->in});
      li.bias = w.bias.empty() ? sdk::empty_view() : sdk::f32_view(w.bias, {w.desc->out});
      li.stats = &in.stats[i];
      li.scheme =
          scheme_of(in.schemes[i], rule.activations, w.desc->in, scale_dtype_for(in.schemes[i], source_.config()));
    }
    return in;
  }

  // Keeps the group's quantized tensors for the layer's flush (with their
  // static input scale) and puts the dequantized weights back into the
  // engine, so later groups and layers see the quantized model.
  void keep_quantized(const QuantRule& rule, const std::vector<int>& members, const GroupInputs& in,
                      const InputStats& in_stats, const std::vector<float>& divisor, GroupResult& result,
                      LayerWeights& lw) {
    for (size_t i = 0; i < members.size(); ++i) {
      QuantTensor& q = result.quant[i];
      if (static_activations(rule)) set_static_input_scale(q, rule, in_stats, divisor);
      LinearWeights& w = lw.linears[static_cast<size_t>(members[i])];
      report_.quantized_input_bytes += w.w.size() * sizeof(float);
      for (int64_t r = 0; r < q->rows; ++r) q.dequantize_row(r, w.w.data() + r * q->cols);
      report_.layers.push_back({in.names[i], rule.algorithm_names(), describe_scheme(in.schemes[i], rule.activations),
                                q->rows, q->cols, result.rel_error[i]});
      pending_.emplace_back(in.names[i], std::move(q));
      keep_importance(in.names[i], in.stats[i], divisor);
    }
  }

  // The format's importance for a Linear (writer_set_importance): the sum
  // of x^2 per input column of the input the stored weight sees, so
  // divided by d^2 where the chain folded 1/d into the op before it.
  void keep_importance(const std::string& module, const xq_linear_stats& st, const std::vector<float>& divisor) {
    if (!writer_.wants_importance() || !st.sum_sq) return;
    std::vector<float> sum_sq(st.sum_sq, st.sum_sq + st.cols);
    if (!divisor.empty())
      for (size_t c = 0; c < sum_sq.size(); ++c) sum_sq[c] /= divisor[c] * divisor[c];
    importance_[module] = {std::move(sum_sq), st.tokens};
  }


  // Whether every Linear of group g outside `members` stays dense (a MoE
  // router, shared_expert_gate: ignored by the example rules).
  bool others_dense(const LayerDesc& desc, int g, const std::vector<int>& members) const {
    for (int li : desc.groups[static_cast<size_t>(g)].linears)
      if (std::find(members.begin(), members.end(), li) == members.end() &&
          rules_.assigned.count(desc.linears[static_cast<size_t>(li)].module))
        return false;
    return true;
  }

  // The rule's algorithm folded 1/s into the norm feeding group g; the
  // dense Linears of the group outside the rule (the MoE router) read the
  // same, now shrunk input: scale their columns by s so their outputs (the
  // routing) stay what they were (W'[:, j] = W[:, j] * d_j, x'_j = x_j / d_j).
  void rescale_dense_others(const LayerDesc& desc, int g, const std::vector<int>& members,
                            const std::vector<float>& divisor, LayerWeights& lw) const {
    for (int li : desc.groups[static_cast<size_t>(g)].linears) {
      if (std::find(members.begin(), members.end(), li) != members.end()) continue;
      LinearWeights& w = lw.linears[static_cast<size_t>(li)];
      const int64_t rows = w.desc->out, cols = w.desc->in;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) w.w[static_cast<size_t>(r * cols + c)] *= divisor[static_cast<size_t>(c)];
      logger().debug("{}: columns rescaled to match the smoothed norm", w.desc->module);
    }
  }

  void record_experts(const LayerStats& stats) {
    for (const auto& e : stats.experts)
      report_.experts.push_back({e.layer, e.expert, e.routed_tokens,
                                 e.all_tokens ? fmt::format("all tokens ({})", e.why) : std::string("routed tokens")});
  }

  // The group's algorithm divided the output rows of the previous Linear
  // (AWQ's v->o, up->down): that Linear is already quantized and waiting
  // in pending_; rescale its stored scales to match.
  void fold_into_previous_op(const LayerDesc& desc, int g, const PrevOp& prev, const std::vector<float>& before,
                             const std::string& group_name) {
    const int prev_index = desc.groups[static_cast<size_t>(g)].prev_linear;
    const std::string& prev_module = desc.linears[static_cast<size_t>(prev_index)].module;
    for (auto& [name, q] : pending_)
      if (name == prev_module) fold_row_rescale(q, before, *prev.values, prev.rows, prev.cols, group_name);
  }

  // The static activation scale: one formula (the sdk's, the
  // compressed-tensors symmetric scale) over max |x| of the input as it
  // reaches this Linear after every stage of the chain, here where the host
  // sees the rescaled op (a stage's own scale would miss a later stage's
  // rescaling).
  static void set_static_input_scale(QuantTensor& q, const QuantRule& rule, const InputStats& in_stats,
                                     const std::vector<float>& divisor) {
    const auto bits = static_cast<uint32_t>(rule.activations.bits);
    q->act_scheme = XQ_ACT_STATIC_TENSOR;
    q->act_bits = bits;
    q->input_scale = sdk::quant::static_input_scale(in_stats.absmax.data(), divisor.empty() ? nullptr : divisor.data(),
                                                    in_stats.cols, bits, q->scale_dtype);
  }

  // The layer is done: its quantized tensors, then its dense tensors
  // (rescaled where an algorithm did). Written only now because a later
  // group may still rescale the rows of an earlier one.
  void flush_layer(const LayerDesc& desc, LayerWeights& lw) {
    for (auto& [name, q] : pending_) {
      if (auto it = importance_.find(name); it != importance_.end())
        writer_.set_importance(name, it->second.first, it->second.second);
      writer_.add_quantized(name, q.get());
    }
    pending_.clear();
    importance_.clear();
    auto emit = [&](const std::string& name, const std::vector<float>* current) {
      if (name.empty()) return;
      if (const TensorEntry* t = source_.find(name)) write_dense(source_, writer_, *t, current);
    };
    emit(desc.input_norm, &lw.input_norm);
    emit(desc.post_norm, &lw.post_norm);
    emit(desc.q_norm, &lw.q_norm);
    emit(desc.k_norm, &lw.k_norm);
    for (auto& w : lw.linears) {
      if (!rules_.assigned.count(w.desc->module)) emit(w.desc->weight_name(), &w.w);
      if (w.desc->bias) emit(w.desc->bias_name(), &w.bias);
    }
  }

  Runtime& runtime_;
  const Checkpoint& source_;
  const RuleAssignment& rules_;
  Model& model_;
  OutputWriter& writer_;
  RunReport& report_;
  std::vector<std::pair<std::string, QuantTensor>> pending_;
  std::unique_ptr<MoeBlockRows> block_rows_;
  std::map<std::string, std::pair<std::vector<float>, uint64_t>> importance_;  // module -> (sum x^2, tokens)
};

}  // namespace

void run_calibrated(Runtime& runtime, const Pipeline& p, const Checkpoint& source, const RuleAssignment& rules,
                    OutputWriter& writer, RunReport& report) {
  if (!p.calibration.enabled)
    fail(XQ_ERR_INVALID_ARGUMENT, "{}: the rules need calibration statistics; add a calibration section "
         "(calibration: {{text: FILE, samples: N, seq_len: L}})", p.file.string());
  ModelOptions mo;
  mo.dequantize_all = true;
  mo.layers_on_demand = true;  // one layer's F32 weights at a time, not the model's
  mo.tokenizer_from = p.calibration.tokenizer;
  auto model = Model::open(runtime, p.model_path, mo);
  auto samples = calibration_samples(*model, p);
  // A format that weights its requantization by the input's sum of x^2
  // (gguf, like llama.cpp's importance matrix) gets it for every Linear.
  const uint32_t needs = statistics_needed(runtime, rules) | (writer.wants_importance() ? uint32_t(XQ_NEED_SUM_SQ) : 0u);
  write_tensors_outside_layers(source, model->arch(), rules, writer);

  ResumeCheckpoint checkpoint(resume_dir(p), run_fingerprint(p, source, samples), p.resume);
  for (int layer = 0; layer < checkpoint.next_layer(); ++layer) checkpoint.replay(layer, writer, report);
  checkpoint.record(writer, report);

  CalibrationOptions co;
  co.sequential_groups = true;
  co.moe = p.calibration.moe;
  if (co.moe.experts_per_pass > 0 && transform_on_experts(runtime, model->arch(), rules)) {
    logger().info("calibration: a rescaling algorithm quantizes the experts; their gate/up statistics are held for "
                  "every expert at once (calibration.moe.experts_per_pass needs a rule without one)");
    co.moe.experts_per_pass = 0;
  }
  co.seed = p.calibration.seed;
  co.first_layer = checkpoint.next_layer();
  std::vector<float> first_input = checkpoint.take_hidden();
  co.first_input = &first_input;
  co.after_layer = [&](int layer, const std::vector<float>& next_input) {
    checkpoint.commit_layer(layer, next_input, report);
  };
  LayerQuantizer quantizer(runtime, source, rules, *model, writer, report);
  LayerwiseCalibrator calibrator(*model, std::move(samples));
  calibrator.run(
      needs, [&](int layer, LayerStats& stats, LayerWeights& lw) { quantizer.on_group(layer, stats, lw); }, co);
  writer.set_recorder({}, {});
  report.peak_float_weight_bytes = model->peak_float_weight_bytes();
  report.peak_statistics_bytes = calibrator.peak_statistics_bytes();
  logger().info("calibration: at most {:.1f} MiB of statistics held at once", report.peak_statistics_bytes / 1048576.0);
  logger().info("calibration: at most {:.1f} MiB of F32 weights held at once", report.peak_float_weight_bytes / 1048576.0);
}

}  // namespace xquant
