// gguf_vocabulary.cpp: see gguf_vocabulary.hpp. The keys are llama.cpp's
// (gguf-py/gguf/constants.py Keys.Tokenizer).
#include "gguf_vocabulary.hpp"

#include "gguf_file.hpp"

namespace xquant::gguf {

sdk::hf_tokenizer::GgufVocabulary read_gguf_vocabulary(const std::string& path) {
  const File f(path);
  sdk::hf_tokenizer::GgufVocabulary v;
  auto need = [&](const char* key) -> const Value& {
    const Value* x = f.find(key);
    if (!x) throw sdk::Error(XQ_ERR_NOT_FOUND, path + ": no '" + key + "', so no tokenizer can be synthesised");
    return *x;
  };
  auto as_string = [&](const char* key, const Value& x) {
    if (x.type != VType::STRING) throw sdk::Error(XQ_ERR_MALFORMED, path + ": '" + key + "' is not a string");
    return x.s;
  };
  v.model = as_string("tokenizer.ggml.model", need("tokenizer.ggml.model"));
  const Value& tokens = need("tokenizer.ggml.tokens");
  if (tokens.type != VType::ARRAY || tokens.elem != VType::STRING)
    throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.tokens' is not an array of strings");
  v.tokens = f.strings(tokens);
  if (const Value* x = f.find("tokenizer.ggml.pre")) v.pre = as_string("tokenizer.ggml.pre", *x);
  if (const Value* x = f.find("tokenizer.ggml.scores")) {
    if (x->type != VType::ARRAY || !(x->elem == VType::F32 || x->elem == VType::F64))
      throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.scores' is not an array of floats");
    v.scores = x->floats;
  }
  if (const Value* x = f.find("tokenizer.ggml.token_type")) {
    const bool integers = x->elem == VType::I8 || x->elem == VType::U8 || x->elem == VType::I16 ||
                          x->elem == VType::U16 || x->elem == VType::I32 || x->elem == VType::U32 ||
                          x->elem == VType::I64 || x->elem == VType::U64;
    if (x->type != VType::ARRAY || !integers)
      throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.token_type' is not an array of integers");
    v.types = x->ints;
  }
  if (const Value* x = f.find("tokenizer.ggml.merges")) {
    if (x->type != VType::ARRAY || x->elem != VType::STRING)
      throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.merges' is not an array of strings");
    v.merges = f.strings(*x);
  }
  // Ids past the vocabulary (llama.cpp writes 0xFFFFFFFF for "none") mean none.
  auto id = [&](const char* key) -> int64_t {
    const Value* x = f.find(key);
    if (!x || !x->is_int()) return -1;
    return x->i >= 0 && static_cast<uint64_t>(x->i) < v.tokens.size() ? x->i : -1;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  auto flag = [&](const char* key) -> int {
    const Value* x = f.find(key);
    return x && x->type == VType::BOOL ? static_cast<int>(x->i != 0) : -1;
  };
  v.add_bos = flag("tokenizer.ggml.add_bos_token");
  v.add_eos = flag("tokenizer.ggml.add_eos_token");
  v.add_space_prefix = flag("tokenizer.ggml.add_space_prefix");
  if (const Value* x = f.find("tokenizer.chat_template"); x && x->type == VType::STRING)
    v.chat_template = x->s;
  return v;
}

}  // namespace xquant::gguf
