// tokenizer.hpp: text <-> token ids for the models xquant runs.
//
// One small interface over the two vocabularies Llama-family checkpoints use,
// built from the canonical model configuration (the "tokenizer.*" keys every
// loader fills, see docs/abi.md):
//   - "tokenizer.model" = "llama": SentencePiece-style (llama.cpp llm_tokenizer_spm:
//     spaces escaped as U+2581, a leading U+2581 prepended, bigram merges by score,
//     <0xXX> byte fallback);
//   - "tokenizer.model" = "gpt2": byte-level BPE (regex pre-split chosen by
//     "tokenizer.pre", any name llama.cpp knows, see pre_tokenizer.cpp;
//     byte->unicode mapping, merges by rank);
//   - "tokenizer.model" = "gemma4": SentencePiece-style BPE (spaces as U+2581,
//     raw UTF-8 pieces, <0xXX> byte fallback);
//   - otherwise, "tokenizer.huggingface_json" (a HF tokenizer.json) with a
//     byte-level BPE model, or a SentencePiece one (byte_fallback BPE with a
//     U+2581 normalizer, run as "llama").
// The engine and the CLI use only this header; implementations live beside it.
#pragma once

#include "core/kv.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace xquant {

class Tokenizer {
 public:
  enum class Kind { Spm, Bpe };

  virtual ~Tokenizer() = default;

  // Builds the tokenizer the configuration describes. Throws xquant::Error
  // (XQ_ERR_NOT_FOUND when the config has no vocabulary, XQ_ERR_UNSUPPORTED for
  // an unknown tokenizer.model / tokenizer.pre, XQ_ERR_MALFORMED for bad data).
  static std::unique_ptr<Tokenizer> from_config(const Kv& config);

  // Text -> ids. `add_bos` prepends bos_id() (when the vocabulary has one).
  // Special/control token texts that appear in `text` (e.g. "<s>",
  // "<|endoftext|>") become their ids when `parse_special` is true, as
  // llama.cpp's llama_tokenize(..., parse_special=true) does; otherwise they
  // are tokenized as plain text. No EOS is ever appended.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                                      bool parse_special = false) const = 0;

  // Ids -> text: the concatenation of token_to_piece() of every id, with the
  // SentencePiece leading space of the first token removed (as llama.cpp's
  // detokenizer does with remove_special/strip). Control tokens (BOS/EOS,
  // ...) decode to "" unless `render_special`.
  virtual std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const = 0;

  // The text of one token as it appears in generated output (U+2581 -> ' ',
  // <0x0A> -> "\n", byte-level BPE symbols -> raw bytes). Control tokens give
  // "" unless `render_special`. Out-of-range ids throw XQ_ERR_INVALID_ARGUMENT.
  virtual std::string token_to_piece(int32_t id, bool render_special = false) const = 0;

  // The vocabulary entry as stored (e.g. "\u2581the", "Ġthe", "<s>").
  virtual const std::string& token_text(int32_t id) const = 0;

  virtual Kind kind() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  // True for ids that end generation (EOS, and e.g. <|eot_id|>/<|im_end|>
  // when they are control tokens the vocabulary marks as end-of-generation).
  virtual bool is_eog(int32_t id) const = 0;
  // tokenizer.add_bos_token from the config (llama.cpp's default when absent:
  // true for SPM, false for BPE).
  virtual bool add_bos_by_default() const = 0;
};

}  // namespace xquant
