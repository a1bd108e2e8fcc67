// quantize_runner.hpp: executes a pipeline in named steps: validate (with
// the plugins) -> open the model -> assign every Linear to a rule or leave it
// dense (rule_assignment.hpp) -> open the format writer (output_writer.hpp)
// -> dispatch: data-free rules stream tensor by tensor
// (streaming_runner.hpp), rules that need statistics run layer by layer
// through the engine (calibrated_runner.hpp). Any failure aborts the writer,
// which removes everything it wrote.
#pragma once

#include "core/runtime.hpp"
#include "pipeline/pipeline.hpp"

#include <string>
#include <vector>

namespace xquant {

struct LayerReport {
  std::string module;
  std::string algorithm;
  std::string scheme;  // e.g. "int4 sym group128"
  int64_t rows = 0, cols = 0;
  double rel_error = 0;  // ||W - W_hat|| / ||W||
};

struct RunReport {
  std::filesystem::path output;
  std::string format;
  std::vector<LayerReport> layers;
  std::vector<std::string> dense_linears;  // Linear modules left unquantized
  // MoE layers: how each expert was calibrated (routed tokens, fallback).
  struct Expert {
    int layer = 0, expert = 0;
    uint64_t routed_tokens = 0;
    std::string statistics;  // "routed tokens" or "all tokens (<why>)"
  };
  std::vector<Expert> experts;
  uint64_t tensors_written = 0;
  uint64_t input_bytes = 0;      // bytes of the tensors read
  uint64_t quantized_input_bytes = 0;  // F32 bytes given to algorithms
  // Calibrated runs: the most F32 weight bytes the engine held at once (one
  // layer's, or the embeddings', since layers load on demand).
  uint64_t peak_float_weight_bytes = 0;
  // Calibrated runs: the most bytes of calibration statistics held at once
  // (calibrate/calibrator.hpp peak_statistics_bytes).
  uint64_t peak_statistics_bytes = 0;
  double seconds = 0;
};

// Loads the pipeline's own plugin folders, validates against the plugins,
// and runs it.
RunReport run_pipeline(Runtime& runtime, Pipeline& pipeline);

std::string describe_scheme(const WeightScheme& w, const ActivationScheme& a);

}  // namespace xquant
