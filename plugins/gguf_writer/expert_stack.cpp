// expert_stack.cpp: see expert_stack.hpp.
#include "expert_stack.hpp"

#include "gguf_types.hpp"

#include <xquant/sdk/plugin.hpp>

namespace xquant::gguf {

using sdk::Error;
using sdk::format;

std::optional<ExpertStacks::Stack> ExpertStacks::add(const std::string& name, int64_t expert, uint32_t type,
                                                      int64_t rows, int64_t cols, std::vector<uint8_t> bytes) {
  if (expert < 0 || expert >= experts_)
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: %s: expert %lld, but the config has %lld experts "
                                                "(num_experts / num_local_experts)",
                                                name.c_str(), static_cast<long long>(expert),
                                                static_cast<long long>(experts_)));
  auto [it, fresh] = pending_.try_emplace(name);
  Pending& p = it->second;
  if (fresh) {
    p.type = type;
    p.rows = rows;
    p.cols = cols;
    p.parts.resize(static_cast<size_t>(experts_));
  } else if (p.type != type || p.rows != rows || p.cols != cols) {
    throw Error(XQ_ERR_UNSUPPORTED,
                format("gguf writer: %s: expert %lld is %s [%lld, %lld], the earlier experts %s [%lld, %lld]; a stacked "
                       "expert tensor has one type and shape (quantize all experts of a layer alike)",
                       name.c_str(), static_cast<long long>(expert), type_info(type)->name,
                       static_cast<long long>(rows), static_cast<long long>(cols), type_info(p.type)->name,
                       static_cast<long long>(p.rows), static_cast<long long>(p.cols)));
  }
  auto& part = p.parts[static_cast<size_t>(expert)];
  if (!part.empty())
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: %s: expert %lld given twice", name.c_str(),
                                                static_cast<long long>(expert)));
  if (bytes.empty())
    throw Error(XQ_ERR_INVALID_ARGUMENT, format("gguf writer: %s: expert %lld has no bytes", name.c_str(),
                                                static_cast<long long>(expert)));
  part = std::move(bytes);
  if (++p.have < experts_) return std::nullopt;

  Stack s{name, p.type, p.rows, p.cols, {}};
  size_t total = 0;
  for (const auto& b : p.parts) total += b.size();
  s.bytes.reserve(total);
  for (const auto& b : p.parts) s.bytes.insert(s.bytes.end(), b.begin(), b.end());
  pending_.erase(it);
  return s;
}

void ExpertStacks::require_complete() const {
  for (const auto& [name, p] : pending_) {
    int64_t missing = 0;
    while (!p.parts[static_cast<size_t>(missing)].empty()) ++missing;
    throw Error(XQ_ERR_INVALID_ARGUMENT,
                format("gguf writer: %s: only %lld of %lld experts were written (expert %lld is missing); llama.cpp "
                       "needs every expert of a layer",
                       name.c_str(), static_cast<long long>(p.have), static_cast<long long>(experts_),
                       static_cast<long long>(missing)));
  }
}

}  // namespace xquant::gguf
