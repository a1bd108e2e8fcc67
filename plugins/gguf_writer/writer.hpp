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
//
// Requantization weights each column's error by its importance, as
// llama-quantize --imatrix does (weighted_encode.hpp): the run's own
// calibration statistic (set_importance, the format ABI's
// writer_set_importance) or a llama.cpp imatrix file (param `imatrix`);
// param `imatrix_out` saves the run's statistic as a llama.cpp imatrix file.
//
// Mixture-of-experts models (qwen3_moe, qwen2_moe, Mixtral as llama): each
// routed expert's Linear is converted like a dense one, and the experts of a
// layer are stacked into blk.N.ffn_{gate,up,down}_exps (expert_stack.hpp);
// the routers stay F32 as convert_hf_to_gguf.py keeps them.
#pragma once

#include "expert_stack.hpp"
#include "gguf_emit.hpp"
#include "imatrix_file.hpp"
#include "model_meta.hpp"

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
  void set_importance(const char* module, const float* sum_sq, int64_t n_cols, uint64_t tokens);
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
  // emit(), or for a routed expert: its part of the stacked tensor, written
  // once the layer's last expert arrives.
  void place(const GgufName& g, uint32_t type, int64_t rows, int64_t cols, uint32_t ndim, std::vector<uint8_t> bytes);

  // The per-column importance (mean x^2) for requantizing `module` (GGUF
  // name `gguf_name`) and where it came from; empty when there is none.
  std::vector<float> importance_for(const std::string& module, const GgufName& g, int64_t cols,
                                    std::string* source) const;

  std::unique_ptr<Emitter> out_;
  std::filesystem::path created_dir_;  // the output's folder, when this writer made it
  std::string arch_, model_name_;
  int64_t n_head_ = 0, n_head_kv_ = 0;
  int64_t n_experts_ = 0;  // routed experts per layer; 0: dense
  ExpertStacks expert_stacks_{0};
  uint32_t wanted_type_ = 0;  // UINT32_MAX: auto
  bool require_exact_ = false;
  size_t exact_ = 0, requantized_ = 0, dense_ = 0;
  std::map<uint32_t, size_t> linear_types_;  // GGUF type -> quantized Linears written in it
  bool use_calibration_importance_ = true;   // param importance
  std::string imatrix_in_path_, imatrix_out_path_;
  ImportanceMatrix imatrix_in_;              // param imatrix (by GGUF name)
  std::map<std::string, ImatrixEntry> calibration_importance_;  // set_importance (by module)
  ImportanceMatrix imatrix_out_;             // the same by GGUF name, for param imatrix_out
  size_t weighted_ = 0;                      // requantized Linears weighted by importance
};

}  // namespace xquant::gguf
