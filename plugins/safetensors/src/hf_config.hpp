// hf_config.hpp: Hugging Face config.json -> the canonical model keys.
//
// Kept apart from the container code because the mapping is the part that
// changes with transformers versions (rope_parameters in v5, eos lists,
// dtype vs torch_dtype); see transformers' models/*/configuration_*.py and
// modeling_rope_utils.py, and docs/abi.md for the canonical keys.
#pragma once

#include <xquant/sdk/host.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace xquant::st {

// Adds the canonical keys found in `cfg` (a parsed config.json) to `kv`.
// `file` names config.json in error messages.
void fill_hf_config(const nlohmann::json& cfg, const std::string& file, const sdk::KvWriter& kv);

}  // namespace xquant::st
