// overlap.cpp: see overlap.hpp.
#include "decide/overlap.hpp"

#include "core/error.hpp"

#include <fmt/format.h>

#include <fstream>
#include <sstream>

namespace xquant::decide {

std::string read_text_file(const std::filesystem::path& p, const char* what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(XQ_ERR_NOT_FOUND, "cannot read {} '{}'", what, p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string check_no_overlap(const std::filesystem::path& calibration_file, const std::string& calibration,
                             const std::filesystem::path& evaluation_file, const std::string& evaluation) {
  std::error_code ec;
  if (std::filesystem::equivalent(calibration_file, evaluation_file, ec))
    fail(XQ_ERR_INVALID_ARGUMENT,
         "accuracy.text '{}' is the calibration text: the accuracy target must be measured on held-out text",
         evaluation_file.string());
  constexpr size_t kPassage = 200, kProbes = 32;
  size_t probes = 0, found = 0;
  if (evaluation.size() >= kPassage) {
    const size_t stride = std::max<size_t>(1, (evaluation.size() - kPassage) / kProbes);
    for (size_t at = 0; at + kPassage <= evaluation.size() && probes < kProbes; at += stride, ++probes)
      if (calibration.find(evaluation.data() + at, 0, kPassage) != std::string::npos) ++found;
  }
  if (found)
    fail(XQ_ERR_INVALID_ARGUMENT,
         "accuracy.text '{}' overlaps the calibration text '{}': {} of {} sampled {}-byte passages occur verbatim in it",
         evaluation_file.string(), calibration_file.string(), found, probes, kPassage);
  return fmt::format("calibration '{}' and evaluation '{}' are different files; none of {} sampled {}-byte passages "
                     "of the evaluation text occurs in the calibration text",
                     calibration_file.filename().string(), evaluation_file.filename().string(), probes, kPassage);
}

}  // namespace xquant::decide
