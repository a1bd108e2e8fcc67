#include "pipeline/quantize_runner.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "decide/decision.hpp"
#include "checkpoint/checkpoint.hpp"
#include "pipeline/calibrated_runner.hpp"
#include "pipeline/output_writer.hpp"
#include "pipeline/resume_checkpoint.hpp"
#include "pipeline/rule_assignment.hpp"
#include "pipeline/run_report_json.hpp"
#include "pipeline/streaming_runner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>

namespace xquant {

std::string describe_scheme(const WeightScheme& w, const ActivationScheme& a) {
  std::string g = w.strategy == XQ_STRATEGY_TENSOR    ? "tensor"
                  : w.strategy == XQ_STRATEGY_CHANNEL ? "channel"
                                                     : fmt::format("group{}", w.group_size);
  std::string s = w.type == "float" ? fmt::format("fp8-e4m3 {}", g)
                                    : fmt::format("int{} {} {}", w.bits, w.symmetric ? "sym" : "asym", g);
  if (a.enabled)
    s += fmt::format(" a{}{} {}", a.type == "float" ? "fp" : "", a.bits, a.dynamic ? "dynamic-token" : "static-tensor");
  return s;
}

namespace {

// The pipeline's own plugin folders loaded, its names and params checked.
void validate(Runtime& runtime, Pipeline& p) {
  for (const auto& dir : p.plugin_paths) runtime.plugins().load_dir(dir);
  validate_with_plugins(p, runtime);
}

std::unique_ptr<Checkpoint> open_source(Runtime& runtime, const Pipeline& p) {
  auto cp = Checkpoint::open(runtime, p.model_path, p.loader);
  logger().info("model: {} ({} loader, {} tensors, architecture {})", p.model_path.string(), cp->loader().name(),
                cp->tensors().size(), cp->config().get_string("architecture", "unknown"));
  if (cp->quant_format())
    fail(XQ_ERR_UNSUPPORTED, "'{}' is already a quantized {} checkpoint; quantize from the unquantized model",
         p.model_path.string(), cp->quant_format()->name());
  // The xq container has no format plugin that detects it (its loader reads
  // it whole), so its quantized tensors say it.
  if (cp->loader().name() == "xq" &&
      std::any_of(cp->tensors().begin(), cp->tensors().end(), [](const auto& t) { return t.has_quantized; }))
    fail(XQ_ERR_UNSUPPORTED, "'{}' is already a quantized xq checkpoint; quantize from the unquantized model",
         p.model_path.string());
  return cp;
}

}  // namespace

RunReport run_pipeline(Runtime& runtime, Pipeline& p) {
  // `algorithm: auto`: the decision engine profiles, decides, and runs
  // the concrete pipeline it derives through this same function.
  if (p.has_automatic_rule()) return decide::run_automatic(runtime, p);
  const auto t0 = std::chrono::steady_clock::now();
  validate(runtime, p);
  auto source = open_source(runtime, p);
  LoadedPlugin& format = runtime.plugins().require(XQ_PLUGIN_FORMAT, p.output_format);
  const RuleAssignment rules = assign_rules(runtime, p, *source, format.has_capability("ragged-groups"));
  OutputWriter writer(format, p.output_path, p.model_path, source->config(), p.validated_output_params, rules.dense,
                      p.source_text);
  writer.store_as_bf16({p.bf16_tensors.begin(), p.bf16_tensors.end()});

  RunReport report;
  report.output = p.output_path;
  report.format = format.name();
  report.dense_linears = rules.dense;
  if (rules.calibrated) {
    run_calibrated(runtime, p, *source, rules, writer, report);
  } else {
    if (p.resume) logger().info("resume: a data-free run streams tensor by tensor and keeps no checkpoint");
    run_streaming(runtime, *source, rules, writer, report);
  }
  // The report travels inside formats that store it (xq); its seconds stop
  // at the last tensor written, before the format's own finish.
  report.tensors_written = writer.tensors_written();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  writer.set_report(run_report_json(report).dump());
  writer.finish();
  if (rules.calibrated) remove_resume_checkpoint(p);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace xquant
