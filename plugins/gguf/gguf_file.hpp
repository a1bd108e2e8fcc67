// gguf_file.hpp: a validated, memory-mapped GGUF v2/v3 container.
//
// Parses the header, every metadata value and every tensor info with each
// read bounds-checked against the file size (counts and lengths are capped
// by the bytes left, so a hostile file can neither crash us nor make us
// allocate more than it could describe). Errors are sdk::Error(MALFORMED /
// UNSUPPORTED / IO) whose message names the file, the field and the byte
// offset. Knows nothing about architectures or canonical names.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xquant::gguf {

enum class VType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12
};
const char* vtype_name(uint32_t t);

// String arrays longer than this are not kept in Value::strings.
constexpr uint64_t kKeptStrings = 1024;

struct Value {
  VType type = VType::U8;
  VType elem = VType::U8;  // ARRAY only
  uint64_t offset = 0;     // byte offset of the value in the file
  // Scalars: integers and bools in `i` (U64 above INT64_MAX keeps its bits),
  // floats in `f`, strings in `s`.
  int64_t i = 0;
  double f = 0;
  std::string s;
  // Arrays: integer/bool elements in `ints`, float elements in `floats`,
  // string elements in `strings` -- up to kKeptStrings of them: longer
  // string arrays (a vocabulary's tokens and merges) are checked at open but
  // read from the mapping when asked (File::strings), so the parse keeps no
  // second copy of them beside the one the runtime's configuration takes
  // (SmolLM2: 49,152 tokens and 48,900 merges).
  uint64_t count = 0;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  uint64_t elements_at = 0;  // byte offset of the first element (arrays)

  bool is_int() const;
  bool is_float() const { return type == VType::F32 || type == VType::F64; }
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // fastest first
  uint32_t type = 0;
  uint64_t offset = 0;       // relative to the data section
  uint64_t file_offset = 0;  // absolute
  uint64_t nbytes = 0;
  uint64_t info_offset = 0;  // where this tensor's info begins (for messages)
  int64_t numel() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  uint64_t row_bytes() const;  // bytes of one ne[0] row
};

class File {
 public:
  // Opens, maps and validates `path`. Throws sdk::Error.
  explicit File(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }
  const uint8_t* data() const { return base_; }

  // Metadata in file order and by key.
  const std::vector<std::pair<std::string, Value>>& kv() const { return kv_; }
  const Value* find(const std::string& key) const;
  // The elements of string array `v` of this file (kept or read again from
  // the mapping, which the open already checked).
  std::vector<std::string> strings(const Value& v) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const uint8_t* tensor_data(const TensorInfo& t) const { return base_ + t.file_offset; }

  // Cheap check used by probe(): the first 4 bytes are "GGUF".
  static bool has_magic(const std::string& path);

 private:
  void parse();
  std::string path_;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace xquant::gguf
