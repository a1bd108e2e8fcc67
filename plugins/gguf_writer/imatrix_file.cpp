// imatrix_file.cpp: see imatrix_file.hpp.
#include "imatrix_file.hpp"

#include "gguf_emit.hpp"
#include "gguf_file.hpp"
#include "gguf_types.hpp"

#include <xquant/sdk/plugin.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

namespace xquant::gguf {

using sdk::Error;
using sdk::format;

namespace {

bool remove_suffix(std::string& s, const std::string& suffix) {
  if (s.size() <= suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  s.resize(s.size() - suffix.size());
  return true;
}

std::vector<float> f32_tensor(const File& f, const TensorInfo& t) {
  if (t.type != kF32)
    throw Error(XQ_ERR_MALFORMED, format("%s: imatrix tensor '%s' is %s, not F32", f.path().c_str(), t.name.c_str(),
                                         type_info(t.type) ? type_info(t.type)->name : "an unknown type"));
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), f.tensor_data(t), v.size() * sizeof(float));
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || v[i] < 0)
      throw Error(XQ_ERR_MALFORMED, format("%s: imatrix tensor '%s' element %zu is %g (finite, >= 0 expected)",
                                           f.path().c_str(), t.name.c_str(), i, static_cast<double>(v[i])));
  return v;
}

uint32_t u32_key(const File& f, const char* key) {
  const Value* v = f.find(key);
  return v && v->is_int() && v->i >= 0 ? static_cast<uint32_t>(v->i) : 0;
}

ImportanceMatrix read_gguf(const std::string& path) {
  const File f(path);
  ImportanceMatrix m;
  if (const Value* d = f.find("imatrix.datasets"); d && d->type == VType::ARRAY) m.datasets = f.strings(*d);
  m.chunk_count = u32_key(f, "imatrix.chunk_count");
  m.chunk_size = u32_key(f, "imatrix.chunk_size");
  std::map<std::string, std::pair<const TensorInfo*, const TensorInfo*>> parts;
  for (const TensorInfo& t : f.tensors()) {
    std::string name = t.name;
    if (remove_suffix(name, ".in_sum2")) parts[name].first = &t;
    else if (remove_suffix(name, ".counts")) parts[name].second = &t;
  }
  if (parts.empty())
    throw Error(XQ_ERR_MALFORMED, path + ": no '<tensor>.in_sum2' / '<tensor>.counts' pairs: not a llama.cpp imatrix");
  for (const auto& [name, p] : parts) {
    if (!p.first || !p.second)
      throw Error(XQ_ERR_MALFORMED, format("%s: imatrix entry '%s' has %s but no %s", path.c_str(), name.c_str(),
                                           p.first ? "in_sum2" : "counts", p.first ? "counts" : "in_sum2"));
    ImatrixEntry e{f32_tensor(f, *p.first), f32_tensor(f, *p.second)};
    if (e.counts.empty() || e.sums.empty() || e.sums.size() % e.counts.size() != 0)
      throw Error(XQ_ERR_MALFORMED, format("%s: imatrix entry '%s': %zu sums do not split into %zu matrices",
                                           path.c_str(), name.c_str(), e.sums.size(), e.counts.size()));
    m.entries.emplace(name, std::move(e));
  }
  return m;
}

// Bounded little-endian reads of the legacy format; every failure names
// the entry and the field.
class DatReader {
 public:
  explicit DatReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_) throw Error(XQ_ERR_IO, path + ": cannot open");
    in_.seekg(0, std::ios::end);
    left_ = static_cast<uint64_t>(in_.tellg());
    in_.seekg(0);
  }
  bool at_end() const { return left_ == 0; }
  void bytes(void* out, uint64_t n, const std::string& what) {
    if (n > left_)
      throw Error(XQ_ERR_MALFORMED, format("%s: legacy imatrix truncated reading %s (%llu bytes needed, %llu left)",
                                           path_.c_str(), what.c_str(), static_cast<unsigned long long>(n),
                                           static_cast<unsigned long long>(left_)));
    in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    left_ -= n;
  }
  int32_t i32(const std::string& what) {
    int32_t v;
    bytes(&v, 4, what);
    return v;
  }
  uint64_t left() const { return left_; }

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t left_ = 0;
};

ImportanceMatrix read_legacy(const std::string& path) {
  DatReader r(path);
  ImportanceMatrix m;
  m.legacy = true;
  const int32_t n = r.i32("the entry count");
  if (n < 1) throw Error(XQ_ERR_MALFORMED, format("%s: legacy imatrix has %d entries", path.c_str(), n));
  for (int32_t i = 0; i < n; ++i) {
    const std::string entry = format("entry %d", i);
    const int32_t len = r.i32(entry + "'s name length");
    if (len < 1 || static_cast<uint64_t>(len) > r.left())
      throw Error(XQ_ERR_MALFORMED, format("%s: %s: name length %d", path.c_str(), entry.c_str(), len));
    std::string name(static_cast<size_t>(len), '\0');
    r.bytes(name.data(), static_cast<uint64_t>(len), entry + "'s name");
    const int32_t ncall = r.i32("'" + name + "' ncall");
    const int32_t nval = r.i32("'" + name + "' nval");
    if (ncall < 0 || nval < 1 || static_cast<uint64_t>(nval) * 4 > r.left())
      throw Error(XQ_ERR_MALFORMED, format("%s: '%s': ncall %d, nval %d (%llu bytes left)", path.c_str(), name.c_str(),
                                           ncall, nval, static_cast<unsigned long long>(r.left())));
    ImatrixEntry e;
    e.sums.resize(static_cast<size_t>(nval));
    r.bytes(e.sums.data(), static_cast<uint64_t>(nval) * 4, "'" + name + "' values");
    for (size_t k = 0; k < e.sums.size(); ++k)
      if (!std::isfinite(e.sums[k]) || e.sums[k] < 0)
        throw Error(XQ_ERR_MALFORMED, format("%s: '%s' value %zu is %g (finite, >= 0 expected)", path.c_str(),
                                             name.c_str(), k, static_cast<double>(e.sums[k])));
    e.counts = {static_cast<float>(ncall)};
    if (!m.entries.emplace(name, std::move(e)).second)
      throw Error(XQ_ERR_MALFORMED, format("%s: entry '%s' appears twice", path.c_str(), name.c_str()));
  }
  if (r.left() >= 4) {  // optional trailer: chunk count and dataset name
    m.chunk_count = static_cast<uint32_t>(std::max(0, r.i32("the chunk count")));
    if (r.left() >= 4) {
      const int32_t len = r.i32("the dataset name length");
      if (len > 0 && static_cast<uint64_t>(len) <= r.left()) {
        std::string d(static_cast<size_t>(len), '\0');
        r.bytes(d.data(), static_cast<uint64_t>(len), "the dataset name");
        m.datasets.push_back(d);
      }
    }
  }
  return m;
}

}  // namespace

std::vector<float> ImportanceMatrix::mean_squares(const std::string& name) const {
  const auto it = entries.find(name);
  if (it == entries.end()) return {};
  const ImatrixEntry& e = it->second;
  std::vector<float> out(e.sums.size());
  if (legacy) {  // values are means times ncall
    const float ncall = e.counts.empty() ? 0.f : e.counts[0];
    for (size_t i = 0; i < out.size(); ++i) out[i] = ncall > 0 ? e.sums[i] / ncall : e.sums[i];
    return out;
  }
  const size_t cols = e.sums.size() / e.counts.size();
  for (size_t j = 0; j < e.counts.size(); ++j)
    for (size_t i = 0; i < cols; ++i)
      out[j * cols + i] = e.counts[j] > 0 ? e.sums[j * cols + i] / e.counts[j] : 1.f;
  return out;
}

ImportanceMatrix read_imatrix(const std::string& path) {
  return File::has_magic(path) ? read_gguf(path) : read_legacy(path);
}

void write_imatrix(const std::string& path, const ImportanceMatrix& m) {
  Emitter out(path);
  out.set("general.type", str_value("imatrix"));
  out.set("imatrix.datasets", strings_value(m.datasets));
  out.set("imatrix.chunk_count", u32_value(m.chunk_count));
  out.set("imatrix.chunk_size", u32_value(m.chunk_size));
  for (const auto& [name, e] : m.entries) {
    const auto n_mat = static_cast<int64_t>(e.counts.size());
    if (n_mat == 0 || e.sums.empty() || e.sums.size() % e.counts.size() != 0)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("imatrix '%s': %zu sums for %zu matrices", name.c_str(),
                                                  e.sums.size(), e.counts.size()));
    const auto cols = static_cast<int64_t>(e.sums.size()) / n_mat;
    out.add_tensor(name + ".in_sum2", kF32, {cols, n_mat}, e.sums.data(), e.sums.size() * sizeof(float));
    out.add_tensor(name + ".counts", kF32, {1, n_mat}, e.counts.data(), e.counts.size() * sizeof(float));
  }
  out.finish();
}

}  // namespace xquant::gguf
