// vocab_meta.hpp: the tokenizer.* metadata of the GGUF being written.
//
// From a GGUF: every tokenizer.* key copied with its stored type.
// From the model configuration: the GGUF vocabulary a GGUF source's loader
// put there, under its GGUF names again.
// From a Hugging Face tokenizer.json (BPE): byte-level BPE as
// tokenizer.ggml.model "gpt2", tokens by id, merges, token types (added
// special tokens CONTROL, other added tokens USER_DEFINED) and the
// pre-tokenizer name llama.cpp picks its split regexes by, recognised from
// the tokenizer's Split regex as convert_hf_to_gguf.py's get_vocab_base_pre
// would name it; SentencePiece in BPE form (byte_fallback, spaces as U+2581,
// e.g. the tokenizer.json synthesised from a GGUF's llama vocabulary) as
// tokenizer.ggml.model "llama" with scores in merge order.
#pragma once

#include "gguf_emit.hpp"

#include <xquant/sdk/host.hpp>

#include <string>

namespace xquant::gguf {

// Copies tokenizer.* from the GGUF at `path`; false when it has none.
bool copy_gguf_tokenizer(Emitter& out, const std::string& path);

// Writes the tokenizer.* keys the gguf loader put in the model
// configuration (tokenizer.ggml.X as tokenizer.X) back under their GGUF
// names and types, e.g. for an .xq file quantized from a GGUF; false when
// the configuration has no GGUF vocabulary (tokenizer.model + tokenizer.tokens).
bool write_config_tokenizer(Emitter& out, const sdk::Host& host, const xq_kv* config);

// Writes the vocabulary of `tokenizer_json` (text of a tokenizer.json);
// `where` names its origin in errors. bos/eos: -1 when unknown.
// `tokenizer_config_json` (text of tokenizer_config.json, may be empty)
// supplies the chat template and add_bos_token / add_eos_token, as
// convert_hf_to_gguf.py's SpecialVocab reads them.
void write_hf_tokenizer(Emitter& out, const std::string& tokenizer_json, const std::string& where, int64_t bos,
                        int64_t eos, const std::string& tokenizer_config_json = "");

}  // namespace xquant::gguf
