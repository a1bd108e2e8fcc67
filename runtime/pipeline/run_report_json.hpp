// run_report_json.hpp: the quantization report of a run as JSON, the one
// form both `xquant run/quantize --json` print and formats that store the
// report keep (the xq container's report_json, docs/formats.md).
#pragma once

#include "pipeline/quantize_runner.hpp"

#include <nlohmann/json.hpp>

namespace xquant {

// {output, format, seconds, tensors_written, input_bytes, dense_linears,
//  experts: [{layer, expert, routed_tokens, statistics}],
//  layers: [{module, algorithm, scheme, shape: [rows, cols], rel_error}]}
nlohmann::json run_report_json(const RunReport& report);

}  // namespace xquant
