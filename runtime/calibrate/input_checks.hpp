// input_checks.hpp: is the calibration data fit to calibrate with? Checked
// once, when the samples are drawn (LayerwiseCalibrator::samples_from_text),
// before any layer runs. docs/pipeline.md ("Calibration checks") states the
// rules; in short:
//   * refused: a text of fewer than kMinCalibrationTokens tokens;
//   * warned: fewer distinct token rows than the widest Linear's input
//     columns (X^T X, GPTQ's Hessian, then has rank below its size);
//   * warned: the windows reuse the text heavily (more sampled tokens than
//     twice the text's), or most windows are repeats or padding-like (a copy
//     of another window, one token id filling half of all sampled tokens, or
//     fewer distinct ids than 1/8 of a long window's length).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xquant {

class Model;

// Below this many tokens (BOS included) a calibration text is refused.
constexpr uint64_t kMinCalibrationTokens = 16;

// What the sampled windows amount to.
struct CalibrationInputSummary {
  uint64_t text_tokens = 0;      // the tokenized text, BOS included
  uint64_t windows = 0;
  uint64_t sample_tokens = 0;    // all windows' tokens
  uint64_t distinct_rows = 0;    // tokens of the windows that are not a copy of an earlier one
  uint64_t repetitive_windows = 0;  // copies, or long windows of few distinct ids
  int32_t top_token = -1;        // the most frequent id over all sampled tokens
  uint64_t top_token_count = 0;
};

CalibrationInputSummary summarize_calibration_input(const std::vector<int32_t>& text_ids,
                                                    const std::vector<std::vector<int32_t>>& samples);

// Throws Error(XQ_ERR_INVALID_ARGUMENT) below the floor.
void require_calibration_floor(const CalibrationInputSummary& s);

// One message per rule that fires; `widest_input` = the largest input width
// of the model's Linears (0: unknown, that rule is skipped).
std::vector<std::string> calibration_input_warnings(const CalibrationInputSummary& s, int64_t widest_input);

// The whole check on `model`'s samples: refuses below the floor, logs each
// warning once, and hands the samples back.
std::vector<std::vector<int32_t>> checked_calibration_samples(const Model& model, const std::vector<int32_t>& text_ids,
                                                              std::vector<std::vector<int32_t>> samples);

}  // namespace xquant
