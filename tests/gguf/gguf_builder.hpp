// gguf_builder.hpp: a tiny GGUF writer for the tests, written from the
// container description (ggml docs/gguf.md) independently of the plugin's reader, so
// the tests can make valid files and precisely broken ones (each field's
// byte offset is recorded for the error-message checks).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace gguf_test {

struct Tensor {
  std::string name;
  std::vector<uint64_t> ne;  // fastest first
  uint32_t type = 0;
  std::vector<uint8_t> data;
  int64_t offset_override = -1;  // write this offset instead of the real one
};

class Builder {
 public:
  uint32_t version = 3;
  uint32_t alignment = 32;  // used for layout; add general.alignment yourself to change it in the file
  std::vector<Tensor> tensors;
  std::map<std::string, uint64_t> at;  // field -> byte offset, filled by build()

  void u32(const std::string& k, uint32_t v) { kv(k, 4, bytes(v)); }
  void u64(const std::string& k, uint64_t v) { kv(k, 10, bytes(v)); }
  void i32(const std::string& k, int32_t v) { kv(k, 5, bytes(v)); }
  void f32(const std::string& k, float v) { kv(k, 6, bytes(v)); }
  void boolean(const std::string& k, bool v) { kv(k, 7, {static_cast<uint8_t>(v)}); }
  void str(const std::string& k, const std::string& v) { kv(k, 8, gstr(v)); }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    std::vector<uint8_t> b = bytes(uint32_t{8});
    append(b, bytes(static_cast<uint64_t>(v.size())));
    for (const auto& s : v) append(b, gstr(s));
    kv(k, 9, b);
  }
  template <class T>
  void array(const std::string& k, uint32_t elem_type, const std::vector<T>& v) {
    std::vector<uint8_t> b = bytes(elem_type);
    append(b, bytes(static_cast<uint64_t>(v.size())));
    for (const auto& x : v) append(b, bytes(x));
    kv(k, 9, b);
  }
  // Any raw value bytes under any type id (for broken files).
  void raw_kv(const std::string& k, uint32_t type, const std::vector<uint8_t>& value) { kv(k, type, value); }

  void add(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::vector<uint8_t> data) {
    tensors.push_back({name, std::move(ne), type, std::move(data), -1});
  }

  std::vector<uint8_t> build() {
    std::vector<uint8_t> out;
    auto put = [&](const std::vector<uint8_t>& b) { append(out, b); };
    at["magic"] = 0;
    put({'G', 'G', 'U', 'F'});
    at["version"] = out.size();
    put(bytes(version));
    at["tensor_count"] = out.size();
    put(bytes(static_cast<uint64_t>(tensors.size())));
    at["kv_count"] = out.size();
    put(bytes(static_cast<uint64_t>(kvs_.size())));
    for (const auto& [k, v] : kvs_) {
      at["key:" + k] = out.size();
      put(v);
    }
    // Lay out data: each tensor aligned.
    std::vector<uint64_t> offs;
    uint64_t pos = 0;
    for (const auto& t : tensors) {
      offs.push_back(pos);
      pos += t.data.size();
      pos += (alignment - pos % alignment) % alignment;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      at["tensor:" + t.name] = out.size();
      put(gstr(t.name));
      at["n_dims:" + t.name] = out.size();
      put(bytes(static_cast<uint32_t>(t.ne.size())));
      for (uint64_t d : t.ne) put(bytes(d));
      at["type:" + t.name] = out.size();
      put(bytes(t.type));
      at["offset:" + t.name] = out.size();
      put(bytes(t.offset_override >= 0 ? static_cast<uint64_t>(t.offset_override) : offs[i]));
    }
    while (out.size() % alignment) out.push_back(0);
    at["data"] = out.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      out.resize(at["data"] + offs[i]);
      put(tensors[i].data);
    }
    return out;
  }

  static void write(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }

  template <class T>
  static std::vector<uint8_t> bytes(T v) {
    std::vector<uint8_t> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    return b;
  }
  static std::vector<uint8_t> gstr(const std::string& s) {
    std::vector<uint8_t> b = bytes(static_cast<uint64_t>(s.size()));
    b.resize(8 + s.size());
    if (!s.empty()) std::memcpy(b.data() + 8, s.data(), s.size());
    return b;
  }
  static void append(std::vector<uint8_t>& a, const std::vector<uint8_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

 private:
  void kv(const std::string& k, uint32_t type, const std::vector<uint8_t>& value) {
    std::vector<uint8_t> b = gstr(k);
    append(b, bytes(type));
    append(b, value);
    kvs_.emplace_back(k, b);
  }
  std::vector<std::pair<std::string, std::vector<uint8_t>>> kvs_;
};

}  // namespace gguf_test
