// held_out_tokens.cpp: see held_out_tokens.hpp.
#include "decide/held_out_tokens.hpp"

#include "engine/evaluate.hpp"

namespace xquant::decide {

std::vector<int32_t> held_out_tokens(Model& model, const std::string& text, uint64_t max_tokens) {
  constexpr size_t kBoundaryMargin = 64, kBytesPerTokenGuess = 6;
  if (max_tokens == 0) return eval_tokens(model, text, 0);
  size_t bytes = static_cast<size_t>(max_tokens + kBoundaryMargin) * kBytesPerTokenGuess;
  while (bytes < text.size()) {
    const size_t cut = text.find('\n', bytes);
    if (cut == std::string::npos) break;
    std::vector<int32_t> ids = eval_tokens(model, text.substr(0, cut + 1), 0);
    if (ids.size() >= max_tokens + kBoundaryMargin) {
      ids.resize(static_cast<size_t>(max_tokens));
      return ids;
    }
    bytes = 2 * cut + 2;
  }
  return eval_tokens(model, text, max_tokens);
}

}  // namespace xquant::decide
