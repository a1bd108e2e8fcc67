// tokenizer_synth_dump.cpp: the HF tokenizer files xquant synthesises for a
// GGUF vocabulary, and the engine's own tokenization of texts with the GGUF,
// for tests/interop/tokenizer_interop.py to compare with HF `tokenizers`.
//
//   xquant_tokenizer_synth_dump GGUF OUT_DIR [TEXTS_JSON IDS_JSON]
//
// Writes OUT_DIR/{tokenizer.json,tokenizer_config.json,special_tokens_map.json}
// (the compressed-tensors writer's files, plugins/compressed_tensors/src/
// hf_synth.cpp). With TEXTS_JSON (a JSON array of strings) also writes
// IDS_JSON: for each text {"plain": ids without BOS, special texts not parsed,
// "special": ids without BOS with special texts parsed, "bos_special": with
// the vocabulary's default BOS and special texts parsed, "decoded":
// decode("special" ids)}, all from the engine's tokenizer on the GGUF.
#include "core/runtime.hpp"
#include "engine/tokenizer/tokenizer.hpp"
#include "checkpoint/checkpoint.hpp"

#include "gguf_vocabulary.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 5) {
    std::fprintf(stderr, "usage: %s GGUF OUT_DIR [TEXTS_JSON IDS_JSON]\n", argv[0]);
    return 2;
  }
  try {
    const auto v = xquant::gguf::read_gguf_vocabulary(argv[1]);
    const std::filesystem::path out = argv[2];
    std::filesystem::create_directories(out);
    write_file(out / "tokenizer.json", xquant::sdk::hf_tokenizer::tokenizer_json(v).dump(2) + "\n");
    write_file(out / "tokenizer_config.json", xquant::sdk::hf_tokenizer::tokenizer_config(v).dump(2) + "\n");
    write_file(out / "special_tokens_map.json", xquant::sdk::hf_tokenizer::special_tokens_map(v).dump(2) + "\n");
    if (argc == 5) {
      std::ifstream f(argv[3], std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      const auto texts = nlohmann::json::parse(ss.str());
      xquant::Runtime rt(xquant::RuntimeOptions{});
      auto cp = xquant::Checkpoint::open(rt, argv[1]);
      auto tok = xquant::Tokenizer::from_config(cp->config());
      nlohmann::json ids = nlohmann::json::array();
      for (const auto& t : texts) {
        const std::string s = t.get<std::string>();
        const auto special = tok->encode(s, false, true);
        ids.push_back({{"plain", tok->encode(s, false, false)},
                       {"special", special},
                       {"bos_special", tok->encode(s, tok->add_bos_by_default(), true)},
                       {"decoded", tok->decode(special)}});
      }
      write_file(argv[4], ids.dump());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xquant_tokenizer_synth_dump: %s\n", e.what());
    return 1;
  }
  return 0;
}
