// expert_stack.hpp: gathers the routed experts of one MoE layer, which the
// pipeline hands over one 2-D Linear at a time (HF's per-expert names), into
// the stacked [experts, rows, cols] tensors llama.cpp reads
// (blk.N.ffn_{gate,up,down}_exps, experts outermost: llama-model.cpp creates
// them as {cols, rows, n_expert}; convert_hf_to_gguf.py's Qwen2MoeModel and
// LlamaModel stack them the same way with torch.stack in expert order).
//
// Every expert's rows are encoded exactly as a dense tensor's would be; a
// stack is complete when all experts arrived, and all must share one GGUF
// type and shape (one tensor has one type).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xquant::gguf {

class ExpertStacks {
 public:
  explicit ExpertStacks(int64_t experts) : experts_(experts) {}

  struct Stack {
    std::string name;  // blk.N.ffn_up_exps.weight
    uint32_t type = 0;
    int64_t rows = 0, cols = 0;
    std::vector<uint8_t> bytes;  // experts * rows * row bytes, expert 0 first
  };

  // Adds expert `expert` of `name`; returns the whole stack once every expert
  // is in (the stack is then forgotten). Throws on an expert out of range or
  // given twice, and on a type or shape unlike the other experts'.
  std::optional<Stack> add(const std::string& name, int64_t expert, uint32_t type, int64_t rows, int64_t cols,
                           std::vector<uint8_t> bytes);

  // Throws naming the first stack that is still missing experts.
  void require_complete() const;

 private:
  struct Pending {
    uint32_t type = 0;
    int64_t rows = 0, cols = 0;
    std::vector<std::vector<uint8_t>> parts;  // by expert; empty until it arrives
    int64_t have = 0;
  };
  int64_t experts_;
  std::map<std::string, Pending> pending_;
};

}  // namespace xquant::gguf
