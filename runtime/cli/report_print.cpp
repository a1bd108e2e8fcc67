// report_print.cpp: see report_print.hpp.
#include "cli/report_print.hpp"

#include "pipeline/run_report_json.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

namespace xquant::cli {

void print_report(const RunReport& r, bool json) {
  if (json) {
    std::printf("%s\n", run_report_json(r).dump(2).c_str());
    return;
  }
  size_t width = 6;
  for (const auto& l : r.layers) width = std::max(width, l.module.size());
  std::printf("%-*s  %-10s  %-24s  %-12s  %s\n", static_cast<int>(width), "module", "algorithm", "scheme", "shape",
              "rel. error");
  double worst = 0, sum = 0;
  for (const auto& l : r.layers) {
    std::printf("%-*s  %-10s  %-24s  %-12s  %.5f\n", static_cast<int>(width), l.module.c_str(), l.algorithm.c_str(),
                l.scheme.c_str(), fmt::format("{}x{}", l.rows, l.cols).c_str(), l.rel_error);
    worst = std::max(worst, l.rel_error);
    sum += l.rel_error;
  }
  std::printf("\n%zu Linear modules quantized (mean rel. error %.5f, worst %.5f), %zu left dense%s\n", r.layers.size(),
              r.layers.empty() ? 0.0 : sum / static_cast<double>(r.layers.size()), worst, r.dense_linears.size(),
              r.dense_linears.empty() ? "" : fmt::format(" ({})", fmt::join(r.dense_linears, ", ")).c_str());
  if (!r.experts.empty()) {
    size_t fallback = 0;
    std::printf("\nMoE experts: layer expert routed-tokens statistics\n");
    for (const auto& e : r.experts) {
      std::printf("  %3d %4d %8llu  %s\n", e.layer, e.expert, static_cast<unsigned long long>(e.routed_tokens),
                  e.statistics.c_str());
      fallback += e.statistics == "routed tokens" ? 0 : 1;
    }
    std::printf("%zu of %zu experts calibrated on all-token statistics\n", fallback, r.experts.size());
  }
  std::printf("wrote %s checkpoint %s (%llu tensors) in %.2f s\n", r.format.c_str(), r.output.string().c_str(),
              static_cast<unsigned long long>(r.tensors_written), r.seconds);
}

}  // namespace xquant::cli
