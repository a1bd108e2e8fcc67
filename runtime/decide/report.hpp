// report.hpp: the decision as text (`--explain`), as JSON (every number),
// and as one self-contained HTML page (no network: inline CSS and SVG):
// per-group sensitivity bars both ways, the choice per group and why, the
// accuracy-vs-bytes curve of the fallback steps, the final numbers.
#pragma once

#include "decide/decision.hpp"

#include <filesystem>
#include <string>

namespace xquant::decide {

std::string explain(const Decision& d);
std::string report_json(const Decision& d);
std::string report_html(const Decision& d);

// Writes `html_path` and the JSON beside it (same name, .json).
void write_report(const Decision& d, const std::filesystem::path& html_path);

}  // namespace xquant::decide
