// gguf_vocabulary.hpp: the tokenizer.ggml.* keys of a GGUF file, read with
// the gguf plugin's parser (../gguf/gguf_file.cpp is compiled in), for the
// tokenizer files synthesised by <xquant/sdk/hf_tokenizer.hpp>.
#pragma once

#include <xquant/sdk/hf_tokenizer.hpp>

#include <string>

namespace xquant::ct {

// Throws sdk::Error (from the parser, or XQ_ERR_NOT_FOUND when the file has
// no tokenizer.ggml.tokens / tokenizer.ggml.model).
sdk::hf_tokenizer::GgufVocabulary read_gguf_vocabulary(const std::string& path);

}  // namespace xquant::ct
