// code_formats.hpp: which codes an .xq file stores, shared by the writer
// (refuses before writing), the canonical codec and the manifest check
// (refuses before trusting a file), so the three can never disagree.
//
// Integer codes of 2..8 bits with any strategy, zero points and act-order;
// FP8 E4M3 codes (bits XQ_BITS_F8_E4M3, abi/include/xquant/xq_tensor.h) as
// the ABI defines them: symmetric, no g_idx, tensor or channel scales.
// Activations quantized to int8 (act_bits 8) or FP8 E4M3.
#pragma once

#include <xquant/sdk/fp8.hpp>
#include <xquant/xq_tensor.h>

#include <string>

namespace xquant::xqc {

// "" when xq stores weights of `bits` described so, else why not.
inline std::string code_format_problem(uint32_t bits, bool has_zeros, bool has_g_idx, xq_strategy strategy) {
  if (sdk::is_e4m3_code(bits)) {
    if (has_zeros) return "FP8 E4M3 weights are symmetric (no zero points)";
    if (has_g_idx) return "FP8 E4M3 weights have no g_idx";
    if (strategy != XQ_STRATEGY_TENSOR && strategy != XQ_STRATEGY_CHANNEL)
      return "FP8 E4M3 weights have tensor or channel scales";
    return "";
  }
  if (bits >= 2 && bits <= 8) return "";
  return sdk::code_format_name(bits) + " codes: xq stores 2..8-bit integer or FP8 E4M3 codes";
}

// Whether activations quantized with `act_bits` are stored (act_scheme set).
inline bool act_bits_stored(uint32_t act_bits) { return act_bits == 8 || sdk::is_e4m3_code(act_bits); }

}  // namespace xquant::xqc
