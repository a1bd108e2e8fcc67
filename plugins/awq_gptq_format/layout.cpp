// layout.cpp: see layout.hpp.
#include "layout.hpp"

#include <xquant/sdk/host.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace xquant::hfq {
namespace {

[[noreturn]] void bad_config(Kind k, const std::string& what) {
  throw sdk::Error(XQ_ERR_MALFORMED, std::string(kind_name(k)) + " quantization_config: " + what);
}

// The first of `keys` present (vLLM's get_from_keys), as an integer.
int64_t int_of(Kind k, const nlohmann::json& j, std::initializer_list<const char*> keys, int64_t fallback,
               bool required) {
  for (const char* key : keys) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_number_integer()) bad_config(k, std::string("'") + key + "' must be an integer");
    return it->get<int64_t>();
  }
  if (required) bad_config(k, std::string("'") + *keys.begin() + "' is missing");
  return fallback;
}

bool bool_of(Kind k, const nlohmann::json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad_config(k, std::string("'") + key + "' must be true or false");
  return it->get<bool>();
}

std::string lower_string_of(Kind k, const nlohmann::json& j, const char* key, const std::string& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) bad_config(k, std::string("'") + key + "' must be a string");
  std::string s = it->get<std::string>();
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

uint32_t load_word(const unsigned char* base, int64_t i) {
  uint32_t w;
  std::memcpy(&w, base + 4 * i, 4);  // the mmap may leave tensors unaligned
  return w;
}

}  // namespace

Settings parse_settings(Kind kind, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    bad_config(kind, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad_config(kind, "not a JSON object");
  if (lower_string_of(kind, j, "quant_method", "") != kind_name(kind))
    bad_config(kind, std::string("quant_method is not '") + kind_name(kind) + "'");
  Settings s;
  s.kind = kind;
  const int64_t bits = int_of(kind, j, {"bits", "w_bit"}, 0, true);
  s.group_size = int_of(kind, j, {"group_size", "q_group_size"}, 0, true);
  if (s.group_size == 0 || s.group_size < -1) bad_config(kind, "group_size must be positive or -1");
  if (kind == Kind::kAwq) {
    if (bits != 4)
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "awq: " + std::to_string(bits) + "-bit AWQ is not supported (the GEMM "
                                           "layout is 4-bit only, as in AutoAWQ and vLLM)");
    const std::string version = lower_string_of(kind, j, "version", "gemm");
    if (version != "gemm")
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "awq: version '" + version + "' is not supported (only the GEMM layout)");
    if (s.group_size == -1) throw sdk::Error(XQ_ERR_UNSUPPORTED, "awq: group_size -1 is not supported");
    // zero_point false (symmetric AWQ) still stores qzeros in the GEMM layout.
    s.sym = !bool_of(kind, j, "zero_point", true);
  } else {
    if (bits != 2 && bits != 4 && bits != 8)
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "gptq: " + std::to_string(bits) + "-bit GPTQ is not supported (2, 4, 8; "
                                           "3-bit words straddle int32 boundaries)");
    s.sym = bool_of(kind, j, "sym", true);
    s.desc_act = bool_of(kind, j, "desc_act", false);
    const std::string fmt = lower_string_of(kind, j, "checkpoint_format", "gptq");
    if (fmt != "gptq" && fmt != "gptq_v2")
      throw sdk::Error(XQ_ERR_UNSUPPORTED, "gptq: checkpoint_format '" + fmt + "' is not supported (gptq, gptq_v2)");
    s.v2 = fmt == "gptq_v2";
  }
  s.bits = static_cast<uint32_t>(bits);
  return s;
}

nlohmann::json settings_json(const Settings& s, const std::vector<std::string>& not_converted, bool lm_head_quantized) {
  nlohmann::json j;
  j["quant_method"] = kind_name(s.kind);
  j["bits"] = s.bits;
  j["group_size"] = s.group_size;
  if (s.kind == Kind::kAwq) {
    j["zero_point"] = true;  // the GEMM layout always carries qzeros
    j["version"] = "gemm";
    j["modules_to_not_convert"] = not_converted;
    return j;
  }
  j["desc_act"] = s.desc_act;
  j["sym"] = s.sym;
  j["checkpoint_format"] = s.v2 ? "gptq_v2" : "gptq";
  j["true_sequential"] = true;
  j["static_groups"] = false;
  // lm_head is quantized only when written so (vLLM's GPTQConfig lm_head);
  // other dense Linears are excluded with vLLM's "-:" dynamic rules.
  j["lm_head"] = lm_head_quantized;
  nlohmann::json dynamic = nlohmann::json::object();
  for (const auto& m : not_converted)
    if (m != "lm_head") dynamic["-:^" + m + "$"] = nlohmann::json::object();
  if (!dynamic.empty()) j["dynamic"] = dynamic;
  return j;
}

std::vector<int32_t> pack_columns(const std::vector<uint8_t>& u, int64_t n_rows, int64_t n_cols, uint32_t bits,
                                  bool awq_order) {
  const int64_t per = pack_factor(bits), words = n_cols / per;
  std::vector<int32_t> out(static_cast<size_t>(n_rows * words), 0);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t w = 0; w < words; ++w) {
      uint32_t word = 0;
      for (int64_t slot = 0; slot < per; ++slot) {
        const int64_t c = w * per + (awq_order ? kAwqOrder[slot] : slot);
        word |= static_cast<uint32_t>(u[static_cast<size_t>(r * n_cols + c)]) << (bits * slot);
      }
      out[static_cast<size_t>(r * words + w)] = static_cast<int32_t>(word);
    }
  return out;
}

std::vector<uint8_t> unpack_columns(const unsigned char* words, int64_t n_rows, int64_t n_cols, uint32_t bits,
                                    bool awq_order) {
  const int64_t per = pack_factor(bits), n_words = n_cols / per;
  const uint32_t mask = (1u << bits) - 1u;
  std::vector<uint8_t> u(static_cast<size_t>(n_rows * n_cols));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t w = 0; w < n_words; ++w) {
      const uint32_t word = load_word(words, r * n_words + w);
      for (int64_t slot = 0; slot < per; ++slot) {
        const int64_t c = w * per + (awq_order ? kAwqOrder[slot] : slot);
        u[static_cast<size_t>(r * n_cols + c)] = static_cast<uint8_t>((word >> (bits * slot)) & mask);
      }
    }
  return u;
}

std::vector<int32_t> pack_rows(const std::vector<uint8_t>& u, int64_t n_rows, int64_t n_cols, uint32_t bits) {
  const int64_t per = pack_factor(bits);
  std::vector<int32_t> out(static_cast<size_t>((n_rows / per) * n_cols), 0);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t c = 0; c < n_cols; ++c) {
      auto& word = out[static_cast<size_t>((r / per) * n_cols + c)];
      word = static_cast<int32_t>(static_cast<uint32_t>(word) |
                                  (static_cast<uint32_t>(u[static_cast<size_t>(r * n_cols + c)]) << (bits * (r % per))));
    }
  return out;
}

std::vector<uint8_t> unpack_rows(const unsigned char* words, int64_t n_rows, int64_t n_cols, uint32_t bits) {
  const int64_t per = pack_factor(bits);
  const uint32_t mask = (1u << bits) - 1u;
  std::vector<uint8_t> u(static_cast<size_t>(n_rows * n_cols));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t c = 0; c < n_cols; ++c)
      u[static_cast<size_t>(r * n_cols + c)] =
          static_cast<uint8_t>((load_word(words, (r / per) * n_cols + c) >> (bits * (r % per))) & mask);
  return u;
}

}  // namespace xquant::hfq
