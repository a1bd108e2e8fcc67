// nearest.hpp: "did you mean" suggestions (Levenshtein distance).
#pragma once

#include <string>
#include <vector>

namespace xquant {

size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest to `word` if it is close enough to be a typo, else "".
std::string nearest_word(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace xquant
