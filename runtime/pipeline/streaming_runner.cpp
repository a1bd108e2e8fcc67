// streaming_runner.cpp: see streaming_runner.hpp.
#include "pipeline/streaming_runner.hpp"

#include "core/log.hpp"
#include "core/progress.hpp"
#include "checkpoint/linear_modules.hpp"
#include "pipeline/stages.hpp"

#include <memory>

namespace xquant {

namespace {

// A tensor kept as stored; a block-quantized source tensor (GGUF) is
// stored dequantized.
void write_dense(const Checkpoint& source, const TensorEntry& t, OutputWriter& writer) {
  if (t.dtype != XQ_DTYPE_BLOCKS) {
    writer.add_dense(t.name, source.raw(t));
    return;
  }
  std::vector<float> data = source.read_f32(t);
  xq_tensor_view v{};
  v.struct_size = sizeof(v);
  v.dtype = XQ_DTYPE_F32;
  v.ndim = static_cast<uint32_t>(t.shape.size());
  for (size_t d = 0; d < t.shape.size(); ++d) v.shape[d] = t.shape[d];
  v.data = data.data();
  v.nbytes = data.size() * sizeof(float);
  writer.add_dense(t.name, v);
}

// One buffer reused for every weight: no per-tensor allocation, zeroing or
// page faults (they cost more than the quantization itself).
class WeightBuffer {
 public:
  float* read(const Checkpoint& source, const TensorEntry& t) {
    const size_t numel = static_cast<size_t>(t.numel());
    if (numel > capacity_) {
      data_.reset(new float[numel]);
      capacity_ = numel;
    }
    source.read(t, XQ_DTYPE_F32, data_.get(), numel * sizeof(float));
    return data_.get();
  }

 private:
  std::unique_ptr<float[]> data_;
  size_t capacity_ = 0;
};

// Quantizes one Linear (a group of one, no statistics) and writes it.
void quantize_linear(Runtime& runtime, const Checkpoint& source, const TensorEntry& t, const std::string& module,
                     const ModuleAssignment& assignment, WeightBuffer& buffer, OutputWriter& writer,
                     RunReport& report) {
  const QuantRule& rule = *assignment.rule;
  const size_t numel = static_cast<size_t>(t.numel());
  float* w = buffer.read(source, t);
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
  const WeightScheme& weights = assignment.weights;
  in.scheme = scheme_of(weights, rule.activations, t.shape[1], scale_dtype_for(weights, source.config()));

  xq_layer_group group{};
  group.struct_size = sizeof(group);
  group.name = module.c_str();
  group.n_linears = 1;
  group.linears = &in;
  group.prev_op.struct_size = sizeof(group.prev_op);
  group.role = "linear";
  GroupResult result = run_stages(runtime, rule, group);
  writer.add_quantized(module, result.quant[0].get());
  report.layers.push_back({module, rule.algorithm_names(), describe_scheme(weights, rule.activations), t.shape[0],
                           t.shape[1], result.rel_error[0]});
  logger().debug("{}: {} {} rel. error {:.5f}", module, rule.algorithm_names(), report.layers.back().scheme,
                 result.rel_error[0]);
}

}  // namespace

void run_streaming(Runtime& runtime, const Checkpoint& source, const RuleAssignment& rules, OutputWriter& writer,
                   RunReport& report) {
  const auto& tensors = source.tensors();
  WeightBuffer buffer;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorEntry& t = tensors[i];
    Progress::report("quantize", i, tensors.size(), "tensors");
    report.input_bytes += t.nbytes;
    if (t.name == "rope_freqs.weight") continue;  // GGUF-only; HF derives it from rope_scaling
    const std::string module = linear_module_of(t);
    auto it = module.empty() ? rules.assigned.end() : rules.assigned.find(module);
    if (it == rules.assigned.end()) write_dense(source, t, writer);
    else quantize_linear(runtime, source, t, module, it->second, buffer, writer, report);
  }
  Progress::report("quantize", tensors.size(), tensors.size(), "tensors");
}

}  // namespace xquant
