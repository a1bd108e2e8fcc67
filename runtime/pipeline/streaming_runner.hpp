// streaming_runner.hpp: the data-free path (every rule runs without
// calibration statistics, e.g. rtn): tensors stream one at a time, read
// (mmap) -> quantize (algorithm plugin) -> write (format plugin), so peak
// memory is a few tensors whatever the model size.
#pragma once

#include "core/runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "pipeline/output_writer.hpp"
#include "pipeline/quantize_runner.hpp"
#include "pipeline/rule_assignment.hpp"

namespace xquant {

// Writes every tensor of `source` through `writer`, quantizing the assigned
// modules. Fills `report` (all but the output summary).
void run_streaming(Runtime& runtime, const Checkpoint& source, const RuleAssignment& rules, OutputWriter& writer,
                   RunReport& report);

}  // namespace xquant
