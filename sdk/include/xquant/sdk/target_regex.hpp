// target_regex.hpp: compiles the "re:" patterns of target and ignore lists
// (pipeline YAML, a checkpoint's compressed-tensors quantization_config),
// which come from files the user did not necessarily write.
//
// Matching follows Python's re.match, as compressed-tensors and
// llm-compressor do: anchored at the start of the module name, not the end.
// Two limits keep a hostile pattern from hanging or exhausting the process
// (both found by fuzzing, tests/fuzz):
//   * libstdc++'s default executor backtracks, exponential on patterns like
//     ".+*x"; its __polynomial extension (bits/regex_constants.h) selects the
//     Thompson-NFA executor instead, polynomial in the name's length;
//   * libstdc++ expands a{N} into N copies of its state, and overflows a
//     signed long reading a long repeat count or back-reference number:
//     numbers above kMaxTargetRepeat there are refused before compiling.
#pragma once

#include <cstdint>
#include <regex>
#include <string>

namespace xquant::sdk {

inline constexpr uint64_t kMaxTargetRepeat = 1000;

// Compiles `pattern` into *out. On failure returns false with the reason in
// *why (the pattern is not repeated there).
inline bool compile_target_regex(const std::string& pattern, std::regex* out, std::string* why) {
  // Numbers in repeat counts ({N}, {N,M}) and back-references (\N). An
  // escaped brace counts too: refusing "\{5000}" is the price of a simple scan.
  bool in_braces = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '{') in_braces = true;
    if (c == '}') in_braces = false;
    const bool starts_number = (c == '\\' || (in_braces && (c == '{' || c == ','))) && i + 1 < pattern.size() &&
                               pattern[i + 1] >= '0' && pattern[i + 1] <= '9';
    if (!starts_number) continue;
    uint64_t value = 0;
    for (size_t k = i + 1; k < pattern.size() && pattern[k] >= '0' && pattern[k] <= '9'; ++k) {
      value = value * 10 + static_cast<uint64_t>(pattern[k] - '0');
      if (value > kMaxTargetRepeat) {
        *why = "numbers above " + std::to_string(kMaxTargetRepeat) +
               " in repeat counts or back-references are not supported";
        return false;
      }
    }
  }
#ifdef __GLIBCXX__
  constexpr auto kSyntax = std::regex::ECMAScript | std::regex_constants::__polynomial;
#else
  constexpr auto kSyntax = std::regex::ECMAScript;
#endif
  try {
    *out = std::regex(pattern, kSyntax);
  } catch (const std::regex_error& e) {
    *why = e.what();
    return false;
  }
  return true;
}

// Python re.match: the pattern must match a prefix of `module`.
inline bool target_regex_matches(const std::regex& re, const std::string& module) {
  return std::regex_search(module, re, std::regex_constants::match_continuous);
}

}  // namespace xquant::sdk
