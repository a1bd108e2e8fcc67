// model.hpp: an open safetensors checkpoint (one file or a sharded set).
//
// Opening validates every file's header fully (sdk/safetensors.hpp), checks
// the shard index against the shards, maps each file and reads config.json
// and tokenizer.json text, so every later call is a lookup or a conversion
// that cannot meet a malformed file.
#pragma once

#include "mapped_file.hpp"

#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/safetensors.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace xquant::st {

struct Shard {
  std::string path;
  sdk::safetensors::Header header;
  MappedFile map;
};

struct TensorRef {
  const sdk::safetensors::TensorEntry* entry;  // into shards[shard].header
  size_t shard;
};

class Model : public sdk::ModelBase {
 public:
  Model(const sdk::Host& host, const std::filesystem::path& path);

  void config(const sdk::KvWriter& kv);
  uint64_t tensor_count() const { return tensors_.size(); }
  void tensor_info(uint64_t i, xq_tensor_info& out) const;
  void read(uint64_t i, xq_dtype dtype, void* dst, uint64_t n) const;
  void raw(uint64_t i, xq_tensor_view& out) const;
  void read_quantized(uint64_t i, xq_quant_tensor&) const;

 private:
  void open_shard(const std::filesystem::path& file);
  void open_index(const std::filesystem::path& index);
  const TensorRef& at(uint64_t i) const;
  const unsigned char* data_of(const TensorRef& t) const;

  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<TensorRef> tensors_;  // sorted by name
  std::optional<std::string> config_text_;
  std::string config_path_;
  std::optional<std::string> tokenizer_text_;
};

// Whether `path` looks like this loader's (0 = no); reads at most a header.
uint32_t probe_path(const std::filesystem::path& path);

}  // namespace xquant::st
