// fuzz_targets.hpp: the parsers under fuzzing, one function per target.
//
// Each function hands its input to the real parsing code (the same calls the
// CLI makes) and uses what was parsed a little, so that a parser which
// accepts nonsense is caught by the code that trusts it. The contract every
// parser must keep on any input: return, or throw xquant::Error (a clear
// message naming what and where). Another exception type, a sanitizer report
// or a crash is a defect. libFuzzer drives these functions (fuzz_main.cpp,
// built with -DXQUANT_FUZZ=ON) and the ctest suite replays the committed
// corpus and every input that once broke a parser (test_fuzz_regressions.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace xquant::fuzz {

// A whole safetensors file: u64 header length, JSON header, data.
void safetensors_header(const uint8_t* data, size_t size);
// A whole GGUF file, opened as a checkpoint through the `gguf` loader plugin.
void gguf(const uint8_t* data, size_t size);
// A pipeline YAML file, parsed and checked against the loaded plugins.
void pipeline_yaml(const uint8_t* data, size_t size);
// The text of a compressed-tensors quantization_config.
void ct_config(const uint8_t* data, size_t size);
// A Hugging Face tokenizer.json, built into a tokenizer that then encodes.
void tokenizer_json(const uint8_t* data, size_t size);
// A whole .xq file, opened through the `xq` loader plugin; its cpu-layout
// segments handed to the cpu provider.
void xq(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // also the folder name under corpus/ and regressions/
  void (*run)(const uint8_t* data, size_t size);
};

inline constexpr Target kTargets[] = {
    {"safetensors_header", safetensors_header}, {"gguf", gguf},
    {"pipeline_yaml", pipeline_yaml},           {"ct_config", ct_config},
    {"tokenizer_json", tokenizer_json},         {"xq", xq},
};

}  // namespace xquant::fuzz
