// stored_report.cpp: see stored_report.hpp.
#include "cli/stored_report.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace xquant::cli {

nlohmann::json parse_stored_report(const std::string& json) {
  return nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
}

std::string stored_report_text(const nlohmann::json& report) {
  if (!report.is_object()) return "  (not a JSON object)\n";
  const nlohmann::json layers = report.value("layers", nlohmann::json::array());
  const nlohmann::json dense = report.value("dense_linears", nlohmann::json::array());
  size_t width = 6;
  double worst = 0, sum = 0;
  for (const auto& l : layers) {
    width = std::max(width, l.value("module", std::string()).size());
    const double e = l.value("rel_error", 0.0);
    worst = std::max(worst, e);
    sum += e;
  }
  std::string out = fmt::format("  {} Linear modules quantized (mean rel. error {:.5f}, worst {:.5f}), {} left dense, "
                                "{:.2f} s\n",
                                layers.size(), layers.empty() ? 0.0 : sum / static_cast<double>(layers.size()), worst,
                                dense.is_array() ? dense.size() : 0, report.value("seconds", 0.0));
  for (const auto& l : layers) {
    const nlohmann::json shape = l.value("shape", nlohmann::json::array());
    out += fmt::format("  {:<{}}  {:<10}  {:<24}  {:<12}  {:.5f}\n", l.value("module", std::string()), width,
                       l.value("algorithm", std::string()), l.value("scheme", std::string()),
                       shape.size() == 2 ? fmt::format("{}x{}", shape[0].dump(), shape[1].dump()) : std::string("?"),
                       l.value("rel_error", 0.0));
  }
  return out;
}

}  // namespace xquant::cli
