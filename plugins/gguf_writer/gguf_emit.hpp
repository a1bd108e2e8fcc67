// gguf_emit.hpp: writes one GGUF v3 file atomically.
//
// Tensor data streams to a temporary data file beside the final path as it
// arrives (each tensor starts on a 32-byte boundary, GGUF's default
// general.alignment); finish() writes header, metadata and tensor infos to a
// second temporary file, appends the data, fsyncs it and renames it over the
// final path. abort() (and the destructor, unless finished) removes both
// temporaries, so a failed run leaves nothing behind; temporaries of this file
// that a killed process left are removed when the next Emitter opens. Metadata values are
// gguf::Value (the parser's own type), written with the type they carry.
#pragma once

#include "gguf_file.hpp"

#include <xquant/sdk/safetensors.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace xquant::gguf {

class Emitter {
 public:
  static constexpr uint32_t kAlignment = 32;

  explicit Emitter(std::filesystem::path final_path);
  ~Emitter() { abort(); }
  Emitter(const Emitter&) = delete;
  Emitter& operator=(const Emitter&) = delete;

  // Metadata in the order added; a key may appear once.
  void set(const std::string& key, Value v);
  bool has(const std::string& key) const { return keys_.count(key) != 0; }

  // Appends a tensor: `ne` fastest first (GGUF order), `bytes` exactly the
  // type's size for that shape.
  void add_tensor(const std::string& name, uint32_t type, const std::vector<int64_t>& ne, const void* bytes,
                  uint64_t nbytes);
  bool has_tensor(const std::string& name) const { return tensor_names_.count(name) != 0; }
  size_t tensor_count() const { return tensors_.size(); }

  void finish();
  void abort() noexcept;

  const std::filesystem::path& final_path() const { return final_; }

 private:
  struct Tensor {
    std::string name;
    uint32_t type;
    std::vector<int64_t> ne;
    uint64_t offset;
  };
  std::filesystem::path temp_name(const char* suffix) const;
  std::string header_bytes() const;

  std::filesystem::path final_, data_path_, staged_path_;
  sdk::safetensors::Fd data_fd_;
  uint64_t data_bytes_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::set<std::string> keys_;
  std::vector<Tensor> tensors_;
  std::set<std::string> tensor_names_;
  bool staged_ = false, failed_ = false;
};

// Value constructors for the metadata types the writer uses.
Value str_value(const std::string& s);
Value u32_value(int64_t v);
Value f32_value(double v);
Value bool_value(bool v);
Value strings_value(const std::vector<std::string>& v);
Value f32s_value(const std::vector<double>& v);
Value i32s_value(const std::vector<int64_t>& v);

}  // namespace xquant::gguf
