// overlap.hpp: calibration and evaluation text must not overlap, or the
// accuracy target is measured on what the algorithms were fitted to.
#pragma once

#include <filesystem>
#include <string>

namespace xquant::decide {

std::string read_text_file(const std::filesystem::path& p, const char* what);

// Throws Error(XQ_ERR_INVALID_ARGUMENT) when both name the same file or when
// any of 32 evenly spaced 200-byte passages of `evaluation` occurs verbatim
// in `calibration`. Returns the sentence the report prints.
std::string check_no_overlap(const std::filesystem::path& calibration_file, const std::string& calibration,
                             const std::filesystem::path& evaluation_file, const std::string& evaluation);

}  // namespace xquant::decide
