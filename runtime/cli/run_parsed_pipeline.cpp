// run_parsed_pipeline.cpp: see run_parsed_pipeline.hpp.
#include "cli/run_parsed_pipeline.hpp"

#include "cli/report_print.hpp"
#include "pipeline/quantize_runner.hpp"

namespace xquant::cli {

int run_parsed_pipeline(const RuntimeOptions& options, Pipeline& pipeline, bool json) {
  Runtime runtime(options);
  RunReport report = run_pipeline(runtime, pipeline);
  print_report(report, json);
  return 0;
}

}  // namespace xquant::cli
