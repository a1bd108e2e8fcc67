// report_print.hpp: how `run` and `quantize` show what they did.
#pragma once

#include "pipeline/quantize_runner.hpp"

#include <string>

namespace xquant::cli {

// Human table on stdout, or the JSON object with --json.
void print_report(const RunReport& report, bool json);

}  // namespace xquant::cli
