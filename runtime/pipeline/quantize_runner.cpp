#include "pipeline/quantize_runner.hpp"

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/memory.hpp"
#include "core/progress.hpp"
#include "model/checkpoint.hpp"
#include "model/linear_modules.hpp"
#include "pipeline/calibrated_runner.hpp"
#include "pipeline/stages.hpp"
#include "plugins/call.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <map>
#include <memory>

namespace fs = std::filesystem;

namespace xquant {

std::string describe_scheme(const WeightScheme& w, const ActivationScheme& a) {
  std::string g = w.granularity == XQ_GRAN_TENSOR    ? "tensor"
                  : w.granularity == XQ_GRAN_CHANNEL ? "channel"
                                                     : fmt::format("group{}", w.group_size);
  std::string s = fmt::format("int{} {} {}", w.bits, w.symmetric ? "sym" : "asym", g);
  if (a.enabled) s += fmt::format(" a{} {}", a.bits, a.dynamic ? "dynamic-token" : "static-tensor");
  return s;
}

namespace {

// Owns a format writer; aborts it unless finished.
class WriterGuard {
 public:
  WriterGuard(LoadedPlugin& plugin, void* handle) : plugin_(plugin), handle_(handle) {}
  ~WriterGuard() {
    if (handle_) plugin_.format().writer_abort(handle_);
  }
  void* get() const { return handle_; }
  void finish() {
    void* h = handle_;
    handle_ = nullptr;  // finish frees the writer, also on failure
    check_plugin_call(plugin_.format().writer_finish(h), fmt::format("{}: finishing the checkpoint", plugin_.name()));
  }

 private:
  LoadedPlugin& plugin_;
  void* handle_;
};

using Assignment = ModuleAssignment;

}  // namespace

RunReport run_pipeline(Runtime& runtime, Pipeline& p) {
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& dir : p.plugin_paths) runtime.plugins().load_dir(dir);
  validate_with_plugins(p, runtime);

  auto cp = Checkpoint::open(runtime, p.model_path, p.loader);
  logger().info("model: {} ({} loader, {} tensors, architecture {})", p.model_path.string(), cp->loader().name(),
                cp->tensors().size(), cp->config().get_string("architecture", "unknown"));
  if (cp->quant_format())
    fail(XQ_ERR_UNSUPPORTED, "'{}' is already a quantized {} checkpoint; quantize from the unquantized model",
         p.model_path.string(), cp->quant_format()->name());

  // Assign each Linear to the first rule that targets it (global ignore and
  // the rule's own ignore win).
  std::map<std::string, Assignment> assigned;
  std::vector<std::string> dense;
  std::vector<bool> rule_used(p.rules.size(), false);
  for (const auto& module : linear_modules(*cp)) {
    bool ignored = false;
    for (const auto& t : p.ignore) ignored = ignored || t.matches(module);
    Assignment a;
    if (!ignored) {
      for (size_t i = 0; i < p.rules.size() && !a.rule; ++i) {
        const auto& r = p.rules[i];
        bool hit = false, skip = false;
        for (const auto& t : r.targets) hit = hit || t.matches(module);
        for (const auto& t : r.ignore) skip = skip || t.matches(module);
        if (hit && !skip) {
          a.rule = &r;
          rule_used[i] = true;
        }
      }
    }
    if (a.rule) assigned[module] = a;
    else dense.push_back(module);
  }
  LoadedPlugin& format = runtime.plugins().require(XQ_PLUGIN_FORMAT, p.output_format);
  const bool takes_ragged = format.has_capability("ragged-groups");
  for (auto& [module, a] : assigned) {
    std::string why;
    a.weights = effective_weights(a.rule->weights, cp->require(module + ".weight").shape[1], takes_ragged, &why);
    if (!why.empty()) logger().warn("{}: {}", module, why);
  }
  // A tied lm_head has no tensor of its own but is a Linear to vLLM and
  // compressed-tensors: list it as ignored, as llm-compressor does.
  if (cp->config().get_bool("tie_word_embeddings", false) && !cp->find("lm_head.weight")) dense.push_back("lm_head");
  for (size_t i = 0; i < p.rules.size(); ++i)
    if (!rule_used[i]) logger().warn("{}: this rule matched no Linear module", p.rules[i].mark.text());
  if (assigned.empty())
    fail(XQ_ERR_INVALID_ARGUMENT, "no Linear module of '{}' matched the quantize rules (Linear modules: {})",
         p.model_path.string(), fmt::join(linear_modules(*cp), ", "));

  bool calibrated = false;
  for (const auto& [module, a] : assigned)
    calibrated = calibrated || rule_needs(runtime, *a.rule) != 0 ||
                 (a.rule->activations.enabled && !a.rule->activations.dynamic);

  // Open the writer.
  std::vector<const char*> ignored_c;
  for (const auto& m : dense) ignored_c.push_back(m.c_str());
  ignored_c.push_back(nullptr);
  std::string out_dir = p.output_path.string(), source = p.model_path.string();
  xq_writer_options wo{};
  wo.struct_size = sizeof(wo);
  wo.out_dir = out_dir.c_str();
  wo.source_path = source.c_str();
  wo.model_config = &cp->config();
  wo.params = &p.validated_output_params;
  wo.ignored_modules = ignored_c.data();
  void* handle = nullptr;
  check_plugin_call(format.format().writer_open(format.state, &wo, &handle),
                    fmt::format("{}: opening '{}' for writing", format.name(), out_dir));
  WriterGuard writer(format, handle);

  RunReport report;
  report.output = p.output_path;
  report.format = format.name();
  report.dense_linears = dense;
  if (calibrated) {
    run_calibrated(runtime, p, *cp, assigned, format, writer.get(), report);
    writer.finish();
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return report;
  }
  const auto& tensors = cp->tensors();
  std::unique_ptr<float[]> weight_buffer;
  size_t weight_capacity = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorEntry& t = tensors[i];
    Progress::report("quantize", i, tensors.size());
    report.input_bytes += t.nbytes;
    if (t.name == "rope_freqs.weight") continue;  // GGUF-only; HF derives it from rope_scaling
    std::string module = linear_module_of(t);
    auto it = module.empty() ? assigned.end() : assigned.find(module);
    if (it == assigned.end()) {
      if (t.dtype == XQ_DTYPE_BLOCKS) {  // block-quantized source tensor: store it dequantized
        std::vector<float> data = cp->read_f32(t);
        xq_tensor_view v{};
        v.struct_size = sizeof(v);
        v.dtype = XQ_DTYPE_F32;
        v.ndim = static_cast<uint32_t>(t.shape.size());
        for (size_t d = 0; d < t.shape.size(); ++d) v.shape[d] = t.shape[d];
        v.data = data.data();
        v.nbytes = data.size() * sizeof(float);
        check_plugin_call(format.format().writer_add_dense(writer.get(), t.name.c_str(), &v),
                          fmt::format("{}: writing '{}'", format.name(), t.name));
      } else {
        xq_tensor_view v = cp->raw(t);
        check_plugin_call(format.format().writer_add_dense(writer.get(), t.name.c_str(), &v),
                          fmt::format("{}: writing '{}'", format.name(), t.name));
      }
      ++report.tensors_written;
      continue;
    }
    const QuantRule& rule = *it->second.rule;
    // One buffer reused for every tensor: no per-tensor allocation, zeroing
    // or page faults (they cost more than the quantization itself).
    const size_t numel = static_cast<size_t>(t.numel());
    if (numel > weight_capacity) {
      weight_buffer.reset(new float[numel]);
      weight_capacity = numel;
    }
    float* w = weight_buffer.get();
    cp->read(t, XQ_DTYPE_F32, w, numel * sizeof(float));
    report.quantized_input_bytes += numel * sizeof(float);

    xq_linear_input in{};
    in.struct_size = sizeof(in);
    in.name = module.c_str();
    in.weight.struct_size = sizeof(in.weight);
    in.weight.dtype = XQ_DTYPE_F32;
    in.weight.ndim = 2;
    in.weight.shape[0] = t.shape[0];
    in.weight.shape[1] = t.shape[1];
    in.weight.data = w;
    in.weight.nbytes = numel * sizeof(float);
    in.bias.struct_size = sizeof(in.bias);
    const WeightScheme& weights = it->second.weights;
    in.scheme = scheme_of(weights, rule.activations, t.shape[1], scale_dtype_for(weights, cp->config()));

    xq_layer_group group{};
    group.struct_size = sizeof(group);
    group.name = module.c_str();
    group.n_linears = 1;
    group.linears = &in;
    group.prev_op.struct_size = sizeof(group.prev_op);
    group.role = "linear";
    GroupResult result = run_stages(runtime, rule, group);
    check_plugin_call(format.format().writer_add_quantized(writer.get(), module.c_str(), &result.quant[0].get()),
                      fmt::format("{}: writing '{}'", format.name(), module));
    ++report.tensors_written;
    report.layers.push_back({module, rule.algorithm_names(), describe_scheme(weights, rule.activations),
                             t.shape[0], t.shape[1], result.rel_error[0]});
    logger().debug("{}: {} {} rel. error {:.5f}", module, rule.algorithm_names(), report.layers.back().scheme,
                   result.rel_error[0]);
  }
  Progress::report("quantize", tensors.size(), tensors.size());
  writer.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace xquant
