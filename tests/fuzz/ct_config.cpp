// ct_config.cpp: the fuzz target for the compressed-tensors plugin's
// quantization_config reader (plugins/compressed_tensors/src/scheme.cpp,
// compiled into the target): parse_quant_config() as read_module() calls it,
// then the module matching the reader does for every Linear.
#include "fuzz_targets.hpp"

#include "scheme.hpp"

#include <string>

namespace xquant::fuzz {

void ct_config(const uint8_t* data, size_t size) {
  const ct::QuantConfig qc = ct::parse_quant_config(std::string(reinterpret_cast<const char*>(data), size));
  for (const char* module : {"model.layers.0.self_attn.q_proj", "model.layers.11.mlp.down_proj", "lm_head"}) {
    bool ignored = false;
    (void)ct::match_module(qc, module, &ignored);
  }
}

}  // namespace xquant::fuzz
