// tokenizer_json.cpp: the fuzz target for the Hugging Face tokenizer.json
// reader (runtime/engine/tokenizer/tokenizer_hf.cpp), reached as the engine
// reaches it: a configuration whose "tokenizer.huggingface_json" holds the
// input. A tokenizer that builds then encodes and decodes a fixed text.
#include "fuzz_targets.hpp"

#include "engine/tokenizer/tokenizer.hpp"

#include <string>

namespace xquant::fuzz {

void tokenizer_json(const uint8_t* data, size_t size) {
  Kv config;
  config.set("tokenizer.huggingface_json", KvValue::string(std::string(reinterpret_cast<const char*>(data), size)));
  auto tok = Tokenizer::from_config(config);
  const auto ids = tok->encode("Hello world, 123 <|endoftext|> caf\xc3\xa9!", true, true);
  (void)tok->decode(ids, true);
}

}  // namespace xquant::fuzz
