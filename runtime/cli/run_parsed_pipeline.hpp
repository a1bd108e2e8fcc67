// run_parsed_pipeline.hpp: what `run` and `quantize` share once they hold a
// parsed pipeline: run it, print the report.
#pragma once

#include "core/runtime.hpp"
#include "pipeline/pipeline.hpp"

namespace xquant::cli {

// Returns the process exit code; errors propagate as exceptions.
int run_parsed_pipeline(const RuntimeOptions& options, Pipeline& pipeline, bool json);

}  // namespace xquant::cli
