// model.cpp: see model.hpp.
#include "model.hpp"

#include "convert.hpp"
#include "hf_config.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace xquant::st {
namespace {

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

std::optional<std::string> read_text(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  if (!in) throw sdk::Error(XQ_ERR_IO, p.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw sdk::Error(XQ_ERR_IO, p.string() + ": read failed");
  return ss.str();
}

nlohmann::json parse_json_file(const std::string& text, const std::string& file) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw sdk::Error(XQ_ERR_MALFORMED, file + ": not valid JSON: " + e.what());
  }
}

// Cheap check of a single file: size, plausible header length, '{'.
uint32_t probe_file(const fs::path& p) {
  sdk::safetensors::Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 10) return 0;
  unsigned char buf[72];
  ssize_t got = ::pread(fd.get(), buf, sizeof(buf), 0);
  if (got < 10) return 0;
  uint64_t n = sdk::safetensors::read_u64_le(buf);
  if (n < 2 || n > sdk::safetensors::kMaxHeaderBytes || n > static_cast<uint64_t>(st.st_size) - 8) return 0;
  for (ssize_t i = 8; i < got && i < static_cast<ssize_t>(8 + n); ++i) {
    unsigned char c = buf[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c != '{') return 0;
    return p.extension() == ".safetensors" ? 90 : 50;
  }
  return 0;
}

}  // namespace

uint32_t probe_path(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    bool has_single = fs::is_regular_file(path / kSingle, ec);
    bool has_index = fs::is_regular_file(path / kIndex, ec);
    if (!has_single && !has_index) return 0;
    return fs::is_regular_file(path / "config.json", ec) ? 95 : 60;
  }
  if (path.filename() == kIndex) return 90;
  return probe_file(path);
}

Model::Model(const sdk::Host& host, const fs::path& path) : sdk::ModelBase(host) {
  std::error_code ec;
  fs::path dir;
  if (fs::is_directory(path, ec)) {
    dir = path;
    if (fs::is_regular_file(path / kSingle, ec)) open_shard(path / kSingle);
    else if (fs::is_regular_file(path / kIndex, ec)) open_index(path / kIndex);
    else
      throw sdk::Error(XQ_ERR_NOT_FOUND,
                       path.string() + ": directory has neither model.safetensors nor model.safetensors.index.json");
  } else if (fs::exists(path, ec)) {
    dir = path.parent_path();
    if (path.filename() == kIndex) open_index(path);
    else open_shard(path);
  } else {
    throw sdk::Error(XQ_ERR_NOT_FOUND, path.string() + ": no such file or directory");
  }

  // config.json and tokenizer.json beside the weights (HF layout). A lone
  // .safetensors file without them is fine: the config then has no model keys.
  if (dir.empty()) dir = ".";
  config_path_ = (dir / "config.json").string();
  config_text_ = read_text(dir / "config.json");
  if (config_text_) (void)parse_json_file(*config_text_, config_path_);  // fail at open, not later
  tokenizer_text_ = read_text(dir / "tokenizer.json");

  for (size_t s = 0; s < shards_.size(); ++s)
    for (const auto& t : shards_[s]->header.tensors) tensors_.push_back(TensorRef{&t, s});
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorRef& a, const TensorRef& b) { return a.entry->name < b.entry->name; });
  for (size_t i = 1; i < tensors_.size(); ++i)
    if (tensors_[i].entry->name == tensors_[i - 1].entry->name)
      throw sdk::Error(XQ_ERR_MALFORMED, "tensor '" + tensors_[i].entry->name + "' is stored in both '" +
                                             shards_[tensors_[i - 1].shard]->path + "' and '" +
                                             shards_[tensors_[i].shard]->path + "'");
}

void Model::open_shard(const fs::path& file) {
  auto shard = std::make_unique<Shard>();
  shard->path = file.string();
  sdk::safetensors::Fd fd;
  shard->header = sdk::safetensors::read_header(file, &fd);
  for (const auto& t : shard->header.tensors)
    if (t.shape.size() > XQ_MAX_DIMS)
      throw sdk::Error(XQ_ERR_UNSUPPORTED, shard->path + ": tensor '" + t.name + "' has " +
                                               std::to_string(t.shape.size()) + " dimensions (at most 8 supported)");
  shard->map = MappedFile(fd.get(), shard->header.file_size, shard->path);
  shards_.push_back(std::move(shard));
}

void Model::open_index(const fs::path& index) {
  const std::string file = index.string();
  auto text = read_text(index);
  if (!text) throw sdk::Error(XQ_ERR_NOT_FOUND, file + ": cannot read");
  nlohmann::json j = parse_json_file(*text, file);
  auto wm = j.is_object() ? j.find("weight_map") : j.end();
  if (!j.is_object() || wm == j.end() || !wm->is_object())
    throw sdk::Error(XQ_ERR_MALFORMED, file + ": no \"weight_map\" object");
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::set<std::string> files;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      throw sdk::Error(XQ_ERR_MALFORMED, file + ": weight_map entry of '" + it.key() + "' is not a file name");
    std::string shard = it.value().get<std::string>();
    // Shards live beside the index; a path that leaves the folder is refused.
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
        shard == "." || shard == "..")
      throw sdk::Error(XQ_ERR_MALFORMED, file + ": weight_map maps '" + it.key() + "' to '" + shard +
                                             "', which is not a file name in the checkpoint folder");
    weight_map[it.key()] = shard;
    files.insert(shard);
  }
  if (files.empty()) throw sdk::Error(XQ_ERR_MALFORMED, file + ": weight_map is empty");
  const fs::path dir = index.parent_path();
  std::map<std::string, size_t> shard_index;
  for (const auto& f : files) {
    std::error_code ec;
    if (!fs::exists(dir / f, ec)) {
      std::string example;
      for (const auto& [t, s] : weight_map)
        if (s == f) {
          example = t;
          break;
        }
      throw sdk::Error(XQ_ERR_NOT_FOUND, file + ": weight_map maps '" + example + "' to shard '" + f +
                                             "', which does not exist in " + dir.string());
    }
    shard_index[f] = shards_.size();
    open_shard(dir / f);
  }
  for (const auto& [tensor, f] : weight_map) {
    const auto& tensors = shards_[shard_index[f]]->header.tensors;
    bool found = std::any_of(tensors.begin(), tensors.end(),
                             [&](const sdk::safetensors::TensorEntry& t) { return t.name == tensor; });
    if (!found)
      throw sdk::Error(XQ_ERR_MALFORMED,
                       file + ": weight_map maps '" + tensor + "' to shard '" + f + "', which has no such tensor");
  }
}

void Model::config(const sdk::KvWriter& kv) {
  kv.set_string("source.format", "safetensors");
  if (config_text_) {
    nlohmann::json cfg = parse_json_file(*config_text_, config_path_);
    fill_hf_config(cfg, config_path_, kv);
    kv.set_string("config_json", *config_text_);
    // Very old compressed-tensors files used compression_config.
    for (const char* k : {"quantization_config", "compression_config"})
      if (auto it = cfg.find(k); it != cfg.end() && it->is_object()) {
        kv.set_string("quantization_config", it->dump());
        break;
      }
  }
  if (tokenizer_text_) kv.set_string("tokenizer.huggingface_json", *tokenizer_text_);
}

const TensorRef& Model::at(uint64_t i) const {
  if (i >= tensors_.size())
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor index " + std::to_string(i) + " out of range (" +
                                                  std::to_string(tensors_.size()) + " tensors)");
  return tensors_[i];
}

const unsigned char* Model::data_of(const TensorRef& t) const {
  const Shard& s = *shards_[t.shard];
  return s.map.data() + s.header.data_offset + t.entry->begin;
}

void Model::tensor_info(uint64_t i, xq_tensor_info& out) const {
  const TensorRef& t = at(i);
  out.dtype = t.entry->xdtype;
  out.ndim = static_cast<uint32_t>(t.entry->shape.size());
  for (size_t d = 0; d < t.entry->shape.size(); ++d) out.shape[d] = t.entry->shape[d];
  out.name = t.entry->name.c_str();
  out.nbytes = t.entry->nbytes();
  out.storage_type_name = t.entry->dtype.c_str();
  out.has_quantized = 0;
}

void Model::read(uint64_t i, xq_dtype dtype, void* dst, uint64_t n) const {
  const TensorRef& t = at(i);
  const auto& e = *t.entry;
  if (!convertible(e.xdtype))
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "tensor '" + e.name + "' is stored as " + e.dtype +
                                             ", which cannot be converted (use raw())");
  if (dtype != XQ_DTYPE_F32 && dtype != XQ_DTYPE_F16 && dtype != XQ_DTYPE_BF16 && dtype != e.xdtype)
    throw sdk::Error(XQ_ERR_UNSUPPORTED, "tensor '" + e.name + "': reads convert to F32, F16, BF16 or the stored " +
                                             e.dtype + " only");
  uint64_t need = e.numel() * element_size(dtype);
  if (n != need)
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "tensor '" + e.name + "': destination has " + std::to_string(n) +
                                                  " bytes, " + std::to_string(need) + " needed");
  if (need == 0) return;
  convert(e.xdtype, data_of(t), e.numel(), dtype, dst);
}

void Model::raw(uint64_t i, xq_tensor_view& out) const {
  const TensorRef& t = at(i);
  out.dtype = t.entry->xdtype;
  out.ndim = static_cast<uint32_t>(t.entry->shape.size());
  for (size_t d = 0; d < t.entry->shape.size(); ++d) out.shape[d] = t.entry->shape[d];
  out.data = const_cast<unsigned char*>(data_of(t));
  out.nbytes = t.entry->nbytes();
}

void Model::read_quantized(uint64_t i, xq_quant_tensor&) const {
  throw sdk::Error(XQ_ERR_UNSUPPORTED, "safetensors tensor '" + at(i).entry->name +
                                           "' is not block-quantized; quantized modules are read through a format plugin");
}

}  // namespace xquant::st
