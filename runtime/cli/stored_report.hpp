// stored_report.hpp: how `xquant inspect` shows the quantization report a
// checkpoint carries (the xq container's report_json, written by
// pipeline/run_report_json.cpp).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace xquant::cli {

// The report parsed; a discarded (is_discarded()) value when `json` is not
// JSON, which inspect shows as such instead of failing.
nlohmann::json parse_stored_report(const std::string& json);

// A summary line and one line per quantized Linear (module, algorithm,
// scheme, shape, rel. error), each ending in '\n'.
std::string stored_report_text(const nlohmann::json& report);

}  // namespace xquant::cli
