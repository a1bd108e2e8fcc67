#include "calibrate/input_checks.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <unordered_map>

namespace xquant {

namespace {

// A window at least this long is "repetitive" with fewer distinct ids than
// 1/kMinDistinctShare of its length (natural text in any tokenizer has far
// more: a 512-token window of English uses well over 100 ids).
constexpr size_t kLongWindow = 64;
constexpr size_t kMinDistinctShare = 8;

bool few_distinct_ids(const std::vector<int32_t>& w) {
  if (w.size() < kLongWindow) return false;
  std::set<int32_t> ids(w.begin(), w.end());
  return ids.size() * kMinDistinctShare < w.size();
}

// The largest input width of the model's Linears: q/k/v and gate/up read the
// hidden state, o_proj the heads, down_proj the MLP's (or an expert's)
// intermediate; a MoE model's intermediate_size may belong to no layer.
int64_t widest_linear_input(const Architecture& a) {
  int64_t widest = 0;
  for (const auto& L : a.layers)
    for (const auto& lin : L.linears) widest = std::max(widest, lin.in);
  return widest;
}

}  // namespace

CalibrationInputSummary summarize_calibration_input(const std::vector<int32_t>& text_ids,
                                                    const std::vector<std::vector<int32_t>>& samples) {
  CalibrationInputSummary s;
  s.text_tokens = text_ids.size();
  s.windows = samples.size();
  std::set<std::vector<int32_t>> seen;
  std::unordered_map<int32_t, uint64_t> counts;
  for (const auto& w : samples) {
    s.sample_tokens += w.size();
    bool copy = !seen.insert(w).second;
    if (!copy) s.distinct_rows += w.size();
    if (copy || few_distinct_ids(w)) ++s.repetitive_windows;
    for (int32_t id : w) ++counts[id];
  }
  for (const auto& [id, n] : counts)
    if (n > s.top_token_count || (n == s.top_token_count && id < s.top_token)) {
      s.top_token = id;
      s.top_token_count = n;
    }
  return s;
}

void require_calibration_floor(const CalibrationInputSummary& s) {
  if (s.text_tokens < kMinCalibrationTokens)
    fail(XQ_ERR_INVALID_ARGUMENT,
         "calibration: the text gives {} tokens, fewer than the {} a calibration needs at the least "
         "(statistics of so few inputs are noise; see docs/pipeline.md, Calibration checks)",
         s.text_tokens, kMinCalibrationTokens);
}

std::vector<std::string> calibration_input_warnings(const CalibrationInputSummary& s, int64_t widest_input) {
  std::vector<std::string> out;
  if (widest_input > 0 && s.distinct_rows < static_cast<uint64_t>(widest_input))
    out.push_back(fmt::format(
        "calibration: {} distinct token rows are fewer than the {} input columns of the widest Linear, so X^T X "
        "(GPTQ's Hessian) has rank at most {} of {}; only dampening makes it invertible. Give more text, "
        "samples or seq_len",
        s.distinct_rows, widest_input, s.distinct_rows, widest_input));
  if (s.sample_tokens > 2 * s.text_tokens)
    out.push_back(fmt::format(
        "calibration: {} windows draw {} tokens from a text of {}: each text token is used {:.1f} times on "
        "average, so most samples repeat each other. Give more text, or fewer samples / a shorter seq_len",
        s.windows, s.sample_tokens, s.text_tokens, static_cast<double>(s.sample_tokens) / s.text_tokens));
  if (s.windows > 1 && 2 * s.repetitive_windows > s.windows)
    out.push_back(fmt::format(
        "calibration: {} of {} windows are repeats (a copy of another window, or a long window of few distinct "
        "tokens): is the text padding or one passage repeated?",
        s.repetitive_windows, s.windows));
  if (s.sample_tokens > 0 && 2 * s.top_token_count > s.sample_tokens)
    out.push_back(fmt::format("calibration: token id {} fills {:.0f}% of the sampled tokens: is the text padding?",
                              s.top_token, 100.0 * s.top_token_count / s.sample_tokens));
  return out;
}

std::vector<std::vector<int32_t>> checked_calibration_samples(const Model& model, const std::vector<int32_t>& text_ids,
                                                              std::vector<std::vector<int32_t>> samples) {
  CalibrationInputSummary s = summarize_calibration_input(text_ids, samples);
  require_calibration_floor(s);
  for (const auto& w : calibration_input_warnings(s, widest_linear_input(model.arch()))) logger().warn("{}", w);
  return samples;
}

}  // namespace xquant
