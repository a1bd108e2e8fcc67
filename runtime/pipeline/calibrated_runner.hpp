// calibrated_runner.hpp: the pipeline path for algorithms that need
// calibration statistics (gptq, awq, smoothquant, static W8A8).
//
// Runs the model through the engine layer by layer (LayerwiseCalibrator in
// true-sequential mode: q/k/v, then o, then gate/up, then down, each group's
// inputs computed with the earlier groups already quantized), hands each
// Linear group to its rule's algorithm chain with the statistics it asked
// for, its preceding op (norm or Linear) and a forward callback that reruns
// the layer (AWQ's loss), writes the quantized tensors, and puts the
// dequantized weights back so later groups and layers see the quantized
// model. Memory is bounded by one layer's activations for all samples.
// Every finished layer is checkpointed so that Pipeline::resume continues a
// killed run from there (pipeline/resume_checkpoint.hpp).
#pragma once

#include "core/runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "pipeline/output_writer.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/quantize_runner.hpp"
#include "pipeline/rule_assignment.hpp"

namespace xquant {

// Writes every tensor of the checkpoint through `writer`, quantizing the
// assigned modules. Fills `report` (all but the output summary).
void run_calibrated(Runtime& runtime, const Pipeline& pipeline, const Checkpoint& source, const RuleAssignment& rules,
                    OutputWriter& writer, RunReport& report);

}  // namespace xquant
