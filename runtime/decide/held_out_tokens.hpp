// held_out_tokens.hpp: the first `max_tokens` evaluation tokens (BOS
// first, as engine/evaluate.hpp eval_tokens gives them) without tokenizing
// the whole text: WikiText-2 test is 1.3 MB, and 8,192 tokens need about
// 40 kB of it. A prefix cut at a line end is tokenized, doubled until it gives
// a margin of tokens beyond those kept, so the kept tokens lie away from the
// cut and equal the whole text's (a tokenizer's choice at a point depends on
// nearby text only; tests/decide/test_held_out_tokens.cpp checks it).
#pragma once

#include "engine/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace xquant::decide {

std::vector<int32_t> held_out_tokens(Model& model, const std::string& text, uint64_t max_tokens);

}  // namespace xquant::decide
