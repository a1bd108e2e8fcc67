// cmd_tokenize.cpp: `xquant tokenize --model PATH (--text STR | --file F)
// [--bos] [--special] [--json]`: the token ids the engine's tokenizer gives
// for a text, built from the checkpoint's canonical config (a vocabulary-only
// GGUF is a valid model). Prints ids space-separated, or {"ids": [...],
// "count": N}. No BOS unless --bos, never an EOS, special-token texts kept as
// plain text unless --special (llama.cpp's test-tokenizer-0 conventions).
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "checkpoint/checkpoint.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace xquant::cli {

int cmd_tokenize(const RuntimeOptions& options, int argc, char** argv) {
  Args args("tokenize", "Print the token ids of a text with a model's tokenizer.",
            {{"model", "PATH", "checkpoint or vocabulary-only GGUF", true},
             {"text", "STR", "text to tokenize"},
             {"file", "F", "read the text from a file (used as is, trailing newline included)"},
             {"bos", "", "prepend the BOS token"},
             {"special", "", "turn special-token texts (e.g. <s>, <|endoftext|>) into their ids"},
             {"json", "", "print {\"ids\": [...], \"count\": N}"}});
  if (!args.parse(argc, argv)) return 0;
  const auto text_opt = args.get("text");
  const auto file_opt = args.get("file");
  if (text_opt.has_value() == file_opt.has_value()) throw UsageError("tokenize: give exactly one of --text or --file");
  std::string text;
  if (text_opt) {
    text = *text_opt;
  } else {
    std::ifstream f(*file_opt, std::ios::binary);
    if (!f) fail(XQ_ERR_NOT_FOUND, "tokenize: cannot read '{}'", *file_opt);
    std::stringstream ss;
    ss << f.rdbuf();
    text = ss.str();
  }
  Runtime runtime(options);
  auto cp = Checkpoint::open(runtime, *args.get("model"));
  auto tok = Tokenizer::from_config(cp->config());
  const auto ids = tok->encode(text, args.flag("bos"), args.flag("special"));
  if (args.flag("json")) {
    nlohmann::json j;
    j["ids"] = ids;
    j["count"] = ids.size();
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace xquant::cli
