// safetensors_file.hpp: the safetensors files tests write, or read and
// rewrite, by hand (tiny random checkpoints, 16-bit copies of stories260K-hf).
// The layout (huggingface/safetensors, docs "Format"): an 8-byte
// little-endian header length, the JSON header (name -> dtype, shape,
// data_offsets into the data section; padded to a multiple of 8 bytes with
// spaces), then the data section.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace xquant::test {

// A safetensors file read whole: its header and its data section.
struct SafetensorsFile {
  nlohmann::json header;
  std::string data;

  // The F32 values of a header entry (an error for another dtype).
  std::vector<float> f32(const nlohmann::json& entry) const {
    if (entry.at("dtype") != "F32") throw std::runtime_error("safetensors_file: not an F32 tensor: " + entry.dump());
    const uint64_t b = entry.at("data_offsets")[0], e = entry.at("data_offsets")[1];
    std::vector<float> v((e - b) / 4);
    std::memcpy(v.data(), data.data() + b, e - b);
    return v;
  }
};

inline SafetensorsFile read_safetensors(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("safetensors_file: cannot open " + file.string());
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string head(n, '\0');
  in.read(head.data(), static_cast<std::streamsize>(n));
  SafetensorsFile f;
  f.header = nlohmann::json::parse(head);
  f.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return f;
}

// Tensors added one by one (data in that order), written as one file whose
// header lists them by name.
class SafetensorsWriter {
 public:
  void add(const std::string& name, const std::string& dtype, const nlohmann::json& shape, const void* bytes,
           size_t n) {
    const size_t begin = body_.size();
    body_.append(static_cast<const char*>(bytes), n);
    header_[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, body_.size()}}};
  }
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& v) {
    add(name, "F32", shape, v.data(), v.size() * sizeof(float));
  }
  void write(const std::filesystem::path& file) const {
    std::string h = header_.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::ofstream f(file, std::ios::binary);
    const uint64_t hn = h.size();
    f.write(reinterpret_cast<const char*>(&hn), 8);
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    f.write(body_.data(), static_cast<std::streamsize>(body_.size()));
    if (!f) throw std::runtime_error("safetensors_file: cannot write " + file.string());
  }

 private:
  nlohmann::json header_ = nlohmann::json::object();
  std::string body_;
};

// Name -> (shape, F32 values): the tiny random checkpoints' tensors, written in name order.
using F32Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

inline void write_f32_safetensors(const std::filesystem::path& file, const F32Tensors& tensors) {
  SafetensorsWriter w;
  for (const auto& [name, t] : tensors) w.add_f32(name, t.first, t.second);
  w.write(file);
}

}  // namespace xquant::test
