// gguf_vocabulary.hpp: the tokenizer.ggml.* keys of a GGUF file, read with
// gguf_file.cpp, for the tokenizer files <xquant/sdk/hf_tokenizer.hpp>
// synthesises. A writer of HF-layout checkpoints compiles this file,
// gguf_file.cpp and gguf_types.cpp in (plugins/compressed_tensors does).
#pragma once

#include <xquant/sdk/hf_tokenizer.hpp>

#include <string>

namespace xquant::gguf {

// Throws sdk::Error (from the parser, or XQ_ERR_NOT_FOUND when the file has
// no tokenizer.ggml.tokens / tokenizer.ggml.model).
sdk::hf_tokenizer::GgufVocabulary read_gguf_vocabulary(const std::string& path);

}  // namespace xquant::gguf
