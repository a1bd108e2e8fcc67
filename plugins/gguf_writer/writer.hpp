// writer.hpp: the `gguf` format's writer: one GGUF v3 file that llama.cpp
// loads, from the canonical tensors the pipeline produces.
//
// Quantized Linears whose integer codes lie on a GGUF block grid are
// converted without a second rounding (symmetric codes on Q4_0/Q5_0/Q8_0,
// asymmetric ones on Q4_1/Q5_1 through s*(q - z) = s*q - s*z, for any group
// size that is a multiple of 32); the others are dequantized and quantized
// again to the `type` param. Every tensor is decoded back with the loader's
// own block decoders and compared with our canonical dequantization, and
// the log says per tensor whether the two are equal (exact) or not
// (requantized, with the error).
#pragma once

#include "gguf_emit.hpp"

#include <xquant/sdk/plugin.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace xquant::gguf {

class Writer : public sdk::WriterBase {
 public:
  Writer(const sdk::Host& host, const xq_writer_options& options);

  void add_dense(const char* name, const xq_tensor_view& t);
  void add_quantized(const char* module, const xq_quant_tensor& q);
  void finish();
  void abort() noexcept;

 private:
  struct Target {
    uint32_t type = 0;
    bool from_codes = false;  // codes lie on the type's grid
    std::string why_not;      // why they do not (for messages)
  };
  Target plan(const xq_quant_tensor& q, uint32_t wanted) const;
  void write_tokenizer(const xq_writer_options& o, const sdk::KvReader& config);
  void emit(const std::string& gguf_name, const std::string& base, uint32_t type, int64_t rows, int64_t cols,
            uint32_t ndim, const std::vector<uint8_t>& bytes);

  std::unique_ptr<Emitter> out_;
  std::filesystem::path created_dir_;  // the output's folder, when this writer made it
  std::string arch_, model_name_;
  int64_t n_head_ = 0, n_head_kv_ = 0;
  uint32_t wanted_type_ = 0;  // UINT32_MAX: auto
  bool require_exact_ = false;
  size_t exact_ = 0, requantized_ = 0, dense_ = 0;
  std::map<uint32_t, size_t> linear_types_;  // GGUF type -> quantized Linears written in it
};

}  // namespace xquant::gguf
