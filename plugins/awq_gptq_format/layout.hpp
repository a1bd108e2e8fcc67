// layout.hpp: how AutoAWQ (GEMM) and AutoGPTQ/GPTQModel store a quantized
// Linear, and their config.json quantization_config, both ways.
//
// Stored tensors of a Linear [out, in] (unsigned codes u = code + 2^(b-1),
// unsigned zero points zu = zero + 2^(b-1)):
//   AWQ  qweight I32 [in, out/8]: u^T packed along out, 8 nibbles a word, the
//        nibble in bit slot i holding output column order_map[i] of its 8,
//        order_map = [0,2,4,6,1,3,5,7] (AutoAWQ awq/modules/linear/gemm.py
//        WQLinear_GEMM.from_linear; vLLM's AWQ_REVERSE_ORDER undoes it);
//        qzeros I32 [groups, out/8] packed the same way; scales [groups, out].
//        Dequantized: (u - zu) * s. 4-bit only; no g_idx.
//   GPTQ qweight I32 [in/(32/b), out]: u^T packed along in, element k of a
//        word at bit b*k; qzeros I32 [groups, out/(32/b)] packed along out;
//        scales [groups, out]; g_idx I32 [in] (the group of each input
//        column; act-order when not c / group_size). v1 (checkpoint_format
//        "gptq", AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py
//        pack()) stores zu - 1 and readers add 1 back; v2 ("gptq_v2",
//        GPTQModel) stores zu. Dequantized: (u - zu) * s[g_idx[c]].
#pragma once

#include <xquant/xq_tensor.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace xquant::hfq {

enum class Kind { kAwq, kGptq };

inline const char* kind_name(Kind k) { return k == Kind::kAwq ? "awq" : "gptq"; }

// One checkpoint's quantization settings (the quantization_config is global).
struct Settings {
  Kind kind = Kind::kGptq;
  uint32_t bits = 4;
  int64_t group_size = 128;  // -1: one group per row (per-channel)
  bool sym = true;           // GPTQ `sym`; AWQ always stores zero points
  bool desc_act = false;     // GPTQ act-order (a non-trivial g_idx)
  bool v2 = false;           // GPTQ checkpoint_format "gptq_v2"
};

// Parses config.json's quantization_config text. Accepts AutoAWQ's own keys
// (w_bit, q_group_size, version "GEMM") as vLLM does; MALFORMED/UNSUPPORTED
// naming the key otherwise.
Settings parse_settings(Kind kind, const std::string& quantization_config);

// The quantization_config transformers' AwqConfig/GPTQConfig and vLLM's
// AWQConfig/GPTQConfig read; `not_converted` lists Linears left dense.
nlohmann::json settings_json(const Settings& s, const std::vector<std::string>& not_converted,
                             bool lm_head_quantized);

// Values per int32 word.
inline int64_t pack_factor(uint32_t bits) { return 32 / bits; }

// AWQ's bit slot -> column within a word (AutoAWQ's order_map).
inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Packs the unsigned values u[r][c] (r < n_rows, c < n_cols, row-major) of
// a matrix whose columns are packed `pack_factor` to a word:
// out [n_rows, n_cols / pack]. AWQ interleaves with kAwqOrder.
std::vector<int32_t> pack_columns(const std::vector<uint8_t>& u, int64_t n_rows, int64_t n_cols, uint32_t bits,
                                  bool awq_order);
// The inverse: `words` [n_rows, n_cols / pack] (unaligned bytes) -> u.
std::vector<uint8_t> unpack_columns(const unsigned char* words, int64_t n_rows, int64_t n_cols, uint32_t bits,
                                    bool awq_order);
// GPTQ qweight: u [n_rows, n_cols] packed along rows -> [n_rows / pack, n_cols].
std::vector<int32_t> pack_rows(const std::vector<uint8_t>& u, int64_t n_rows, int64_t n_cols, uint32_t bits);
std::vector<uint8_t> unpack_rows(const unsigned char* words, int64_t n_rows, int64_t n_cols, uint32_t bits);

}  // namespace xquant::hfq
