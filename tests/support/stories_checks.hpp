// stories_checks.hpp: the format tests' shared checks on stories260K files:
// its paths under ../shared, the all-position logits of one fixed prompt, and
// `xquant eval`'s perplexity of a checkpoint on the TinyStories text (the
// stories260K-hf copy carries no tokenizer: the vocabulary is the GGUF's).
// Tests that include it define XQUANT_SHARED_DIR (tests/CMakeLists.txt) and
// link the CLI runner (tests/cli/subprocess.hpp).
#pragma once

#include "engine/model.hpp"
#include "subprocess.hpp"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <vector>

namespace xquant::test {

inline const std::filesystem::path kStoriesHf = std::filesystem::path(XQUANT_SHARED_DIR) / "models" / "stories260K-hf";
inline const std::filesystem::path kStoriesGguf =
    std::filesystem::path(XQUANT_SHARED_DIR) / "models" / "stories260K" / "stories260K.gguf";
inline const std::filesystem::path kTinyStoriesText =
    std::filesystem::path(XQUANT_SHARED_DIR) / "data" / "tinystories" / "tinystories_val.subset.txt";

// Logits at every position of one fixed 12-token prompt.
inline std::vector<float> stories_prompt_logits(Model& model) {
  KvCache cache(model.arch(), 32);
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378, 285, 289, 310, 270, 264, 411, 316};
  SequenceInput in;
  in.cache = &cache;
  in.tokens = tokens.data();
  in.n = static_cast<int64_t>(tokens.size());
  in.all_logits = true;
  return model.forward({in});
}

// `xquant eval` perplexity over the first 2,048 TinyStories tokens; -1 (and a
// test failure) when the CLI fails.
inline double stories_cli_perplexity(const std::filesystem::path& model) {
  auto r = run_xquant({"eval", "--model", model.string(), "--text", kTinyStoriesText.string(), "--max-tokens", "2048",
                       "--tokenizer", kStoriesGguf.string(), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out)["perplexity"].get<double>() : -1.0;
}

}  // namespace xquant::test
