// gguf_vocabulary.cpp: see gguf_vocabulary.hpp. The keys are llama.cpp's
// (gguf-py/gguf/constants.py Keys.Tokenizer).
#include "gguf_vocabulary.hpp"

#include "gguf_file.hpp"

namespace xquant::ct {

sdk::hf_tokenizer::GgufVocabulary read_gguf_vocabulary(const std::string& path) {
  const gguf::File f(path);
  sdk::hf_tokenizer::GgufVocabulary v;
  auto need = [&](const char* key) -> const gguf::Value& {
    const gguf::Value* x = f.find(key);
    if (!x) throw sdk::Error(XQ_ERR_NOT_FOUND, path + ": no '" + key + "', so no tokenizer can be synthesised");
    return *x;
  };
  auto as_string = [&](const char* key, const gguf::Value& x) {
    if (x.type != gguf::VType::STRING) throw sdk::Error(XQ_ERR_MALFORMED, path + ": '" + key + "' is not a string");
    return x.s;
  };
  v.model = as_string("tokenizer.ggml.model", need("tokenizer.ggml.model"));
  const gguf::Value& tokens = need("tokenizer.ggml.tokens");
  if (tokens.type != gguf::VType::ARRAY || tokens.elem != gguf::VType::STRING)
    throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.tokens' is not an array of strings");
  v.tokens = tokens.strings;
  if (const gguf::Value* x = f.find("tokenizer.ggml.pre")) v.pre = as_string("tokenizer.ggml.pre", *x);
  if (const gguf::Value* x = f.find("tokenizer.ggml.scores")) {
    if (x->type != gguf::VType::ARRAY || !(x->elem == gguf::VType::F32 || x->elem == gguf::VType::F64))
      throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.scores' is not an array of floats");
    v.scores = x->floats;
  }
  if (const gguf::Value* x = f.find("tokenizer.ggml.token_type")) {
    if (x->type != gguf::VType::ARRAY || !x->floats.empty() || !x->strings.empty())
      throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.token_type' is not an array of integers");
    v.types = x->ints;
  }
  if (const gguf::Value* x = f.find("tokenizer.ggml.merges")) {
    if (x->type != gguf::VType::ARRAY || x->elem != gguf::VType::STRING)
      throw sdk::Error(XQ_ERR_MALFORMED, path + ": 'tokenizer.ggml.merges' is not an array of strings");
    v.merges = x->strings;
  }
  // Ids past the vocabulary (llama.cpp writes 0xFFFFFFFF for "none") mean none.
  auto id = [&](const char* key) -> int64_t {
    const gguf::Value* x = f.find(key);
    if (!x || !x->is_int()) return -1;
    return x->i >= 0 && static_cast<uint64_t>(x->i) < v.tokens.size() ? x->i : -1;
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  v.unk = id("tokenizer.ggml.unknown_token_id");
  v.pad = id("tokenizer.ggml.padding_token_id");
  auto flag = [&](const char* key) -> int {
    const gguf::Value* x = f.find(key);
    return x && x->type == gguf::VType::BOOL ? static_cast<int>(x->i != 0) : -1;
  };
  v.add_bos = flag("tokenizer.ggml.add_bos_token");
  v.add_eos = flag("tokenizer.ggml.add_eos_token");
  v.add_space_prefix = flag("tokenizer.ggml.add_space_prefix");
  if (const gguf::Value* x = f.find("tokenizer.chat_template"); x && x->type == gguf::VType::STRING)
    v.chat_template = x->s;
  return v;
}

}  // namespace xquant::ct
