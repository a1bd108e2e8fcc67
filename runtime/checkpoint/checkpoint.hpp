// checkpoint.hpp: an opened checkpoint, whatever its format.
//
// Picks the loader plugin (named, or the best `probe` score), exposes the
// canonical configuration and tensor catalog, reads tensors (converted or as
// stored), and, when the configuration says the checkpoint is quantized,
// reads a Linear's canonical quantized tensor through the format plugin that
// recognises it. This is the one way the pipeline, the engine and
// `xquant inspect` see models.
#pragma once

#include "core/kv.hpp"
#include "core/memory.hpp"
#include "core/runtime.hpp"

#include <xquant/xq_format.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace xquant {

struct TensorEntry {
  uint64_t index = 0;
  std::string name;
  xq_dtype dtype = XQ_DTYPE_INVALID;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  std::string storage_type;
  bool has_quantized = false;
  int64_t numel() const;
  std::string shape_text() const;  // "[576, 1536]"
};

class Checkpoint {
 public:
  static std::unique_ptr<Checkpoint> open(Runtime& runtime, const std::filesystem::path& path,
                                          const std::string& loader_name = "");
  ~Checkpoint();
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::filesystem::path& path() const { return path_; }
  LoadedPlugin& loader() const { return *loader_; }
  Runtime& runtime() const { return runtime_; }
  const Kv& config() const { return config_; }
  // Drops the vocabulary from config(): every "tokenizer.*" array (GGUF's
  // tokens, merges, scores, token types) and the HF tokenizer.json text,
  // for a caller whose tokenizer is built and who reads config() for
  // nothing else of it (Model::open with tokenizer_first); the small keys
  // stay. SmolLM2's Q8_0 GGUF: 4 MB of the 182 its load held (docs/engine.md,
  // "The vocabulary dropped after the tokenizer").
  void drop_vocabulary();
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* find(const std::string& name) const;
  const TensorEntry& require(const std::string& name) const;

  void read(const TensorEntry& t, xq_dtype dtype, void* dst, uint64_t nbytes) const;
  std::vector<float> read_f32(const TensorEntry& t) const;
  xq_tensor_view raw(const TensorEntry& t) const;
  QuantTensor read_quantized(const TensorEntry& t) const;  // loader-level (block formats)
  // The stored bytes of quantized tensor `t` in provider layout `layout`
  // ("canonical" for the canonical segment) with its description (buffers
  // NULL), borrowed while the checkpoint is open; false when the loader
  // stores no such layout for it (only the `xq` loader stores any).
  bool read_packed(const TensorEntry& t, const std::string& layout, xq_quant_tensor& desc, xq_tensor_view& bytes) const;

  // The format plugin that recognises this checkpoint as quantized, if any.
  LoadedPlugin* quant_format() const { return quant_format_; }
  // The canonical quantized tensor of `module` (no ".weight"), or nullopt
  // when the module is stored dense (or the checkpoint is not quantized).
  std::optional<QuantTensor> read_module(const std::string& module) const;
  xq_tensor_source tensor_source() const;

 private:
  Checkpoint(Runtime& runtime, std::filesystem::path path, LoadedPlugin& loader, void* handle);
  Runtime& runtime_;
  std::filesystem::path path_;
  LoadedPlugin* loader_;
  void* handle_;
  Kv config_;
  std::vector<TensorEntry> tensors_;
  std::vector<size_t> by_name_;  // indices of tensors_ sorted by name
  LoadedPlugin* quant_format_ = nullptr;
};

}  // namespace xquant
