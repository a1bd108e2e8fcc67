#include "pipeline/calibrated_runner.hpp"

#include "calibrate/calibrator.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/model.hpp"
#include "model/linear_modules.hpp"
#include "pipeline/stages.hpp"
#include "plugins/call.hpp"

#include <xquant/sdk/half.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace xquant {

namespace {

const char* kRoles[] = {"attn_qkv", "attn_o", "mlp_gate_up", "mlp_down"};

xq_tensor_view f32_view(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  xq_tensor_view t{};
  t.struct_size = sizeof(t);
  t.dtype = XQ_DTYPE_F32;
  t.ndim = static_cast<uint32_t>(shape.size());
  int d = 0;
  for (auto s : shape) t.shape[d++] = s;
  t.data = v.empty() ? nullptr : v.data();
  t.nbytes = v.size() * sizeof(float);
  return t;
}

// The forward callback of one group: reruns the whole decoder layer on a
// few calibration samples with candidate weights. For the MLP groups the
// change of the layer output equals the change of the module output (the
// residual carries the rest unchanged); for the attention groups it is the
// attention output's change as seen through the MLP (docs/algorithms.md).
struct LayerForward {
  Model* model = nullptr;
  int layer = 0;
  std::vector<int> linears;               // LayerDesc linear index per group linear
  const float* layer_input = nullptr;     // all samples
  std::vector<int64_t> rows_of_sample;    // the samples used, their row ranges
  std::vector<int64_t> first_row;
  int64_t rows = 0;
  std::vector<float> input;               // the group's input rows for those samples
  std::vector<float> kbuf, vbuf, scratch;

  static xq_status run(void* ctx, const float* const* weights, float* out) {
    auto* self = static_cast<LayerForward*>(ctx);
    try {
      self->forward(weights, out);
      return XQ_OK;
    } catch (const Error& e) {
      set_last_error(e.what());
      return e.status();
    } catch (const std::exception& e) {
      set_last_error(e.what());
      return XQ_ERR_INTERNAL;
    }
  }

  void forward(const float* const* weights, float* out) {
    LayerWeights& lw = model->layer(layer);
    const int64_t H = model->arch().hidden;
    std::vector<std::vector<float>> saved(linears.size());
    for (size_t i = 0; i < linears.size(); ++i)
      if (weights && weights[i]) {
        auto& w = lw.linears[static_cast<size_t>(linears[i])].w;
        saved[i] = w;
        std::copy(weights[i], weights[i] + w.size(), w.begin());
      }
    int64_t at = 0;
    for (size_t s = 0; s < rows_of_sample.size(); ++s) {
      int64_t n = rows_of_sample[s];
      float* y = out + at * H;
      std::copy(layer_input + first_row[s] * H, layer_input + (first_row[s] + n) * H, y);
      model->layer_forward(layer, y, n, {SequenceSpan{0, n, 0, kbuf.data(), vbuf.data()}});
      at += n;
    }
    // Copy back into the same buffers: the group's weight views point there.
    for (size_t i = 0; i < linears.size(); ++i)
      if (!saved[i].empty()) std::copy(saved[i].begin(), saved[i].end(), lw.linears[static_cast<size_t>(linears[i])].w.begin());
  }
};

// The op feeding a group that an algorithm may rescale: the norm for
// q/k/v and gate/up; v_proj for o (only without GQA and biases, AWQ's
// rule); up_proj for down. `values` is NULL when there is none.
struct PrevOp {
  std::vector<float>* values = nullptr;
  int64_t rows = 0, cols = 0;  // cols 0: a 1-D norm
};

PrevOp prev_op_of(const LayerDesc& desc, LayerWeights& lw, int group) {
  PrevOp p;
  if (group == LayerDesc::kAttnIn) {
    p.values = &lw.input_norm;
  } else if (group == LayerDesc::kMlpIn) {
    p.values = &lw.post_norm;
  } else {
    const int prev = group == LayerDesc::kAttnOut ? LayerDesc::kV : LayerDesc::kUp;
    const int self = group == LayerDesc::kAttnOut ? LayerDesc::kO : LayerDesc::kDown;
    auto& w = lw.linears[static_cast<size_t>(prev)];
    if (w.desc->out == desc.linears[static_cast<size_t>(self)].in && w.bias.empty()) {
      p.values = &w.w;
      p.rows = w.desc->out;
      p.cols = w.desc->in;
    }
  }
  return p;
}

// A previous Linear that is already quantized had its output rows divided
// by s in the engine copy (before -> after); divide its per-row scales the
// same way so the written checkpoint stays equivalent ((q - z) * scale / s),
// then make the engine copy the exact dequantization of what is stored.
void fold_row_rescale(QuantTensor& q, const std::vector<float>& before, std::vector<float>& after, int64_t rows,
                      int64_t cols, const std::string& group_name) {
  if (q->granularity == XQ_GRAN_TENSOR)
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
void write_dense(const Checkpoint& cp, LoadedPlugin& format, void* writer, const TensorEntry& t,
                 const std::vector<float>* current) {
  std::vector<float> source;
  bool changed = false;
  if (current && t.dtype != XQ_DTYPE_BLOCKS) {
    source = cp.read_f32(t);
    changed = source.size() == current->size() && !std::equal(source.begin(), source.end(), current->begin());
  }
  if (!changed && t.dtype != XQ_DTYPE_BLOCKS) {
    xq_tensor_view v = cp.raw(t);
    check_plugin_call(format.format().writer_add_dense(writer, t.name.c_str(), &v),
                      fmt::format("{}: writing '{}'", format.name(), t.name));
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
  check_plugin_call(format.format().writer_add_dense(writer, t.name.c_str(), &v),
                    fmt::format("{}: writing '{}'", format.name(), t.name));
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(XQ_ERR_NOT_FOUND, "cannot read calibration text '{}'", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

void run_calibrated(Runtime& runtime, const Pipeline& p, const Checkpoint& source,
                    const std::map<std::string, ModuleAssignment>& assigned, LoadedPlugin& format, void* writer,
                    RunReport& report) {
  if (!p.calibration.enabled)
    fail(XQ_ERR_INVALID_ARGUMENT, "{}: the rules need calibration statistics; add a calibration section "
         "(calibration: {{text: FILE, samples: N, seq_len: L}})", p.file.string());
  ModelOptions mo;
  mo.dequantize_all = true;
  mo.tokenizer_from = p.calibration.tokenizer;
  auto model = Model::open(runtime, p.model_path, mo);
  const Architecture& arch = model->arch();
  auto samples = LayerwiseCalibrator::samples_from_text(*model, read_text(p.calibration.text), p.calibration.samples,
                                                        p.calibration.seq_len, p.calibration.seed);
  logger().info("calibration: {} samples x {} tokens from {}", samples.size(),
                samples.empty() ? 0 : samples.front().size(), p.calibration.text.string());

  uint32_t needs = 0;
  bool static_acts = false;
  std::set<const QuantRule*> rules;
  for (const auto& [m, a] : assigned) rules.insert(a.rule);
  for (const auto* r : rules) {
    needs |= rule_needs(runtime, *r);
    static_acts = static_acts || (r->activations.enabled && !r->activations.dynamic);
  }
  if (static_acts) needs |= XQ_NEED_ABSMAX;

  // Tensors outside the decoder layers go first, as stored (lm_head only
  // through a data-free rule: it has no calibrated inputs here).
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
    if (!module.empty() && assigned.count(module))
      fail(XQ_ERR_UNSUPPORTED, "'{}' is outside the decoder layers; quantize it with a data-free rule (rtn) or ignore it",
           module);
    write_dense(source, format, writer, t, nullptr);
    ++report.tensors_written;
  }

  // A layer's quantized tensors are written when the whole layer is done: a
  // later group may still rescale the rows of an earlier one (AWQ's
  // v->o and up->down groups divide the previous Linear's output rows).
  std::vector<std::pair<std::string, QuantTensor>> pending;

  CalibrationOptions co;
  co.sequential_groups = true;
  co.seed = p.calibration.seed;
  LayerwiseCalibrator calibrator(*model, std::move(samples));
  calibrator.run(needs, [&](int layer, LayerStats& stats, LayerWeights& lw) {
    const LayerDesc& desc = arch.layers[static_cast<size_t>(layer)];
    const int g = stats.active_group;
    const LinearGroupDesc& gd = desc.groups[static_cast<size_t>(g)];
    const InputStats& in_stats = stats.groups[static_cast<size_t>(g)];

    // The linears of this group per rule (a group may mix rules or dense ones).
    std::map<const QuantRule*, std::vector<int>> by_rule;
    for (int li : gd.linears) {
      auto it = assigned.find(desc.linears[static_cast<size_t>(li)].module);
      if (it != assigned.end()) by_rule[it->second.rule].push_back(li);
    }
    for (auto& [rule, members] : by_rule) {
      const bool whole_group = members.size() == gd.linears.size();
      PrevOp prev_op = prev_op_of(desc, lw, g);
      std::vector<float>* prev = prev_op.values;
      const int64_t prev_rows = prev_op.rows, prev_cols = prev_op.cols;
      std::vector<float> prev_before = prev ? *prev : std::vector<float>();

      std::vector<xq_linear_input> inputs(members.size());
      std::vector<xq_linear_stats> views(members.size());
      std::vector<std::string> names(members.size());
      std::vector<WeightScheme> schemes(members.size());
      for (size_t i = 0; i < members.size(); ++i) {
        LinearWeights& w = lw.linears[static_cast<size_t>(members[i])];
        names[i] = w.desc->module;
        schemes[i] = assigned.at(names[i]).weights;
        views[i] = in_stats.view();
        xq_linear_input& in = inputs[i];
        in.struct_size = sizeof(in);
        in.name = names[i].c_str();
        in.weight = f32_view(w.w, {w.desc->out, w.desc->in});
        in.bias = f32_view(w.bias, {w.desc->out});
        in.stats = &views[i];
        in.scheme = scheme_of(schemes[i], rule->activations, w.desc->in, scale_dtype_for(schemes[i], source.config()));
      }

      // Forward callback on a few samples (up to ~512 rows).
      LayerForward fwd;
      fwd.model = model.get();
      fwd.layer = layer;
      fwd.linears = members;
      fwd.layer_input = stats.layer_input;
      const auto& off = *stats.offsets;
      int64_t max_len = 0;
      for (size_t s = 0; s + 1 < off.size() && fwd.rows < 512; ++s) {
        int64_t n = off[s + 1] - off[s];
        fwd.first_row.push_back(off[s]);
        fwd.rows_of_sample.push_back(n);
        fwd.rows += n;
        max_len = std::max(max_len, n);
      }
      fwd.kbuf.resize(static_cast<size_t>(max_len * arch.n_kv_heads * arch.head_dim));
      fwd.vbuf.resize(fwd.kbuf.size());
      {  // the group's own input rows for those samples
        const int64_t H = arch.hidden, cols = desc.linears[static_cast<size_t>(members[0])].in;
        fwd.input.reserve(static_cast<size_t>(fwd.rows * cols));
        std::vector<float> y;
        for (size_t s = 0; s < fwd.rows_of_sample.size(); ++s) {
          int64_t n = fwd.rows_of_sample[s];
          y.assign(stats.layer_input + fwd.first_row[s] * H, stats.layer_input + (fwd.first_row[s] + n) * H);
          model->layer_forward(layer, y.data(), n, {SequenceSpan{0, n, 0, fwd.kbuf.data(), fwd.vbuf.data()}},
                               [&](int grp, const float* x, int64_t rows, int64_t c) {
                                 if (grp == g) fwd.input.insert(fwd.input.end(), x, x + rows * c);
                               });
        }
      }
      xq_group_forward gf{};
      gf.struct_size = sizeof(gf);
      gf.ctx = &fwd;
      gf.n_tokens = fwd.rows;
      gf.in_features = desc.linears[static_cast<size_t>(members[0])].in;
      gf.out_features = arch.hidden;
      gf.input = fwd.input.data();
      gf.run = &LayerForward::run;

      std::string group_name = fmt::format("model.layers.{}.{}", layer, kRoles[g]);
      xq_layer_group group{};
      group.struct_size = sizeof(group);
      group.name = group_name.c_str();
      group.n_linears = inputs.size();
      group.linears = inputs.data();
      group.prev_op.struct_size = sizeof(group.prev_op);
      if (prev) {
        group.prev_op = prev_cols ? f32_view(*prev, {prev_rows, prev_cols}) : f32_view(*prev, {int64_t(prev->size())});
      }
      group.role = kRoles[g];
      group.forward = &gf;
      GroupResult result = run_stages(runtime, *rule, group);

      if (prev && !whole_group && *prev != prev_before)
        fail(XQ_ERR_UNSUPPORTED,
             "{}: '{}' rescaled the op feeding {} but only part of that group is quantized by this rule; "
             "give every Linear of the group the same rule",
             rule->mark.text(), rule->algorithm_names(), group_name);

      if (prev && prev_cols && *prev != prev_before) {
        const int prev_index = g == LayerDesc::kAttnOut ? LayerDesc::kV : LayerDesc::kUp;
        const std::string& prev_module = desc.linears[static_cast<size_t>(prev_index)].module;
        for (auto& [name, q] : pending)
          if (name == prev_module) fold_row_rescale(q, prev_before, *prev, prev_rows, prev_cols, group_name);
      }

      for (size_t i = 0; i < members.size(); ++i) {
        QuantTensor& q = result.quant[i];
        if (static_acts && rule->activations.enabled && !rule->activations.dynamic) {
          // Static activation scale: max |x| over the calibration inputs, as
          // the (possibly smoothed) input reaches this Linear: a norm
          // rescaled by 1/s divides column j's absmax by s_j.
          float amax = 0.0f;
          for (int64_t c = 0; c < in_stats.cols; ++c) {
            float a = in_stats.absmax[static_cast<size_t>(c)];
            if (prev && !prev_cols && prev_before[static_cast<size_t>(c)] != 0.0f)
              a *= std::fabs((*prev)[static_cast<size_t>(c)] / prev_before[static_cast<size_t>(c)]);
            amax = std::max(amax, a);
          }
          q->act_scheme = XQ_ACT_STATIC_TENSOR;
          q->act_bits = 8;
          q->input_scale = amax > 0 ? amax / 127.0f : 1.0f;
        }
        LinearWeights& w = lw.linears[static_cast<size_t>(members[i])];
        report.quantized_input_bytes += w.w.size() * sizeof(float);
        for (int64_t r = 0; r < q->rows; ++r) q.dequantize_row(r, w.w.data() + r * q->cols);
        report.layers.push_back({names[i], rule->algorithm_names(), describe_scheme(schemes[i], rule->activations),
                                 q->rows, q->cols, result.rel_error[i]});
        pending.emplace_back(names[i], std::move(q));
      }
    }

    if (g + 1 < static_cast<int>(desc.groups.size())) return;
    // The layer is done: its quantized tensors, then its dense tensors
    // (rescaled where an algorithm did).
    for (auto& [name, q] : pending) {
      check_plugin_call(format.format().writer_add_quantized(writer, name.c_str(), &q.get()),
                        fmt::format("{}: writing '{}'", format.name(), name));
      ++report.tensors_written;
    }
    pending.clear();
    auto emit = [&](const std::string& name, const std::vector<float>* current) {
      if (name.empty()) return;
      if (const TensorEntry* t = source.find(name)) {
        write_dense(source, format, writer, *t, current);
        ++report.tensors_written;
      }
    };
    emit(desc.input_norm, &lw.input_norm);
    emit(desc.post_norm, &lw.post_norm);
    emit(desc.q_norm, &lw.q_norm);
    emit(desc.k_norm, &lw.k_norm);
    for (auto& w : lw.linears) {
      if (!assigned.count(w.desc->module)) emit(w.desc->weight_name(), &w.w);
      if (w.desc->bias) emit(w.desc->bias_name(), &w.bias);
    }
  }, co);
}

}  // namespace xquant
