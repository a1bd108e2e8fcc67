// resume_checkpoint.cpp: see resume_checkpoint.hpp.
#include "pipeline/resume_checkpoint.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <system_error>

namespace fs = std::filesystem;

namespace xquant {

namespace {

// Version 2: the layer's MoE expert lines follow its report lines.
// Version 3: codes of 2- to 4-bit tensors two to a byte (write_quantized).
constexpr char kLayerMagic[8] = {'X', 'Q', 'R', 'S', 'L', 'A', 'Y', '3'};
constexpr char kHiddenMagic[8] = {'X', 'Q', 'R', 'S', 'H', 'I', 'D', '1'};
constexpr char kEndMagic[8] = {'X', 'Q', 'R', 'S', 'E', 'N', 'D', '1'};
constexpr const char* kRunFile = "run.txt";
constexpr const char* kHiddenFile = "hidden.bin";
constexpr const char* kTmpSuffix = ".tmp";

// FNV-1a, 64 bit: the files' checksum and the run fingerprint.
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  template <class T>
  void add_value(const T& v) {
    add(&v, sizeof(v));
  }
  void add_string(const std::string& s) {
    add_value(static_cast<uint64_t>(s.size()));
    add(s.data(), s.size());
  }
};

// Appends values and 8-byte-aligned blobs to a byte string.
class ByteWriter {
 public:
  template <class T>
  void value(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void string(const std::string& s) {
    value(static_cast<uint64_t>(s.size()));
    out_.append(s);
  }
  void blob(const void* p, uint64_t n) {
    value(n);
    align();
    if (n) out_.append(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  // n signed 4-bit codes two to a byte, low nibble first, as a blob of
  // (n + 1) / 2 bytes (every code must lie in [-8, 7]).
  void nibbles(const int8_t* codes, uint64_t n) {
    const uint64_t bytes = (n + 1) / 2;
    value(bytes);
    align();
    const size_t at = out_.size();
    out_.resize(at + static_cast<size_t>(bytes));
    auto* o = reinterpret_cast<unsigned char*>(out_.data() + at);
    for (uint64_t i = 0; i + 1 < n; i += 2)
      o[i / 2] = static_cast<unsigned char>((codes[i] & 0xF) | ((codes[i + 1] & 0xF) << 4));
    if (n % 2) o[n / 2] = static_cast<unsigned char>(codes[n - 1] & 0xF);
  }
  void align() { out_.append((8 - out_.size() % 8) % 8, '\0'); }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

// Reads what ByteWriter wrote from an 8-byte-aligned buffer; a short or
// inconsistent buffer throws (callers treat the file as not there).
class ByteReader {
 public:
  ByteReader(const char* data, size_t size) : data_(data), size_(size) {}
  template <class T>
  T value() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data_ + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::string string() {
    const auto n = value<uint64_t>();
    need(n);
    std::string s(data_ + at_, static_cast<size_t>(n));
    at_ += static_cast<size_t>(n);
    return s;
  }
  void align() { at_ += (8 - at_ % 8) % 8; }
  const void* blob(uint64_t* n) {
    *n = value<uint64_t>();
    align();
    need(*n);
    const void* p = data_ + at_;
    at_ += static_cast<size_t>(*n);
    return p;
  }

 private:
  void need(uint64_t n) const {
    if (n > size_ - at_) fail(XQ_ERR_IO, "truncated resume record");
  }
  const char* data_;
  size_t size_;
  size_t at_ = 0;
};

void write_all(int fd, const void* p, size_t n, const fs::path& file) {
  const char* b = static_cast<const char*>(p);
  while (n) {
    ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(XQ_ERR_IO, "cannot write resume checkpoint '{}': {}", file.string(), std::strerror(errno));
    b += w;
    n -= static_cast<size_t>(w);
  }
}

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// A file that appears under its name whole or not at all: written to
// NAME.tmp with a checksum trailer, fsync'ed, renamed.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path file) : file_(std::move(file)), tmp_(file_.string() + kTmpSuffix) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(XQ_ERR_IO, "cannot create resume checkpoint '{}': {}", tmp_.string(), std::strerror(errno));
  }
  ~AtomicFile() {
    if (fd_ >= 0) {
      ::close(fd_);
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }
  void write(const void* p, size_t n) {
    sum_.add(p, n);
    write_all(fd_, p, n, tmp_);
  }
  void commit() {
    const uint64_t sum = sum_.h;
    write_all(fd_, &sum, sizeof(sum), tmp_);
    write_all(fd_, kEndMagic, sizeof(kEndMagic), tmp_);
    if (::fsync(fd_) != 0) fail(XQ_ERR_IO, "cannot sync '{}': {}", tmp_.string(), std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    fs::rename(tmp_, file_, ec);
    if (ec) fail(XQ_ERR_IO, "cannot rename '{}' to '{}': {}", tmp_.string(), file_.string(), ec.message());
    fsync_dir(file_.parent_path());
  }

 private:
  fs::path file_, tmp_;
  int fd_ = -1;
  Fnv sum_;
};

// The file's bytes without the trailer when it is whole (checksum and end
// marker agree), else nullopt. The buffer is 8-byte aligned.
std::optional<std::vector<uint64_t>> read_whole(const fs::path& file, size_t* size) {
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const auto total = static_cast<size_t>(in.tellg());
  if (total < 16) return std::nullopt;
  std::vector<uint64_t> buf((total + 7) / 8);
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(total))) return std::nullopt;
  const char* bytes = reinterpret_cast<const char*>(buf.data());
  *size = total - 16;
  Fnv sum;
  sum.add(bytes, *size);
  uint64_t stored;
  std::memcpy(&stored, bytes + *size, 8);
  if (stored != sum.h || std::memcmp(bytes + *size + 8, kEndMagic, 8) != 0) return std::nullopt;
  return buf;
}

void hash_kv(Fnv& f, const Kv& kv) {
  for (const auto& [key, v] : kv.values) {
    f.add_string(key);
    f.add_value(static_cast<int>(v.type()));
    f.add_value(v.as_int());
    f.add_value(v.as_float());
    f.add_string(v.as_string());
    for (const auto& s : v.as_strings()) f.add_string(s);
    for (auto i : v.as_ints()) f.add_value(i);
    for (auto d : v.as_floats()) f.add_value(d);
  }
}

void hash_targets(Fnv& f, const std::vector<TargetPattern>& targets) {
  f.add_value(static_cast<uint64_t>(targets.size()));
  for (const auto& t : targets) f.add_string(t.text);
}

// The model's files as found on disk: name, size, modification time.
void hash_model_files(Fnv& f, const fs::path& model) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (fs::is_directory(model, ec)) {
    for (const auto& e : fs::directory_iterator(model, ec))
      if (e.is_regular_file(ec)) files.push_back(e.path());
  } else {
    files.push_back(model);
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    f.add_string(file.filename().string());
    f.add_value(static_cast<uint64_t>(fs::file_size(file, ec)));
    f.add_value(static_cast<int64_t>(fs::last_write_time(file, ec).time_since_epoch().count()));
  }
}

void write_dense(ByteWriter& w, const std::string& name, const xq_tensor_view& v) {
  w.value<uint8_t>(0);
  w.string(name);
  w.value(static_cast<uint32_t>(v.dtype));
  w.value(v.ndim);
  for (uint32_t d = 0; d < v.ndim; ++d) w.value(v.shape[d]);
  w.blob(v.data, v.nbytes);
}

void write_quantized(ByteWriter& w, const std::string& module, const xq_quant_tensor& q) {
  w.value<uint8_t>(1);
  w.string(module);
  w.value(q.bits);
  w.value(q.symmetric);
  w.value(static_cast<int32_t>(q.strategy));
  w.value(q.rows);
  w.value(q.cols);
  w.value(q.group_size);
  w.value(q.n_groups);
  w.value(static_cast<int32_t>(q.scale_dtype));
  w.value(static_cast<int32_t>(q.act_scheme));
  w.value(q.act_bits);
  w.value(q.input_scale);
  const uint64_t n_scales = q.strategy == XQ_STRATEGY_TENSOR ? 1 : static_cast<uint64_t>(q.rows * q.n_groups);
  // Codes of 4 bits or fewer two to a byte: a layer's record is held in
  // memory until it is committed and stays on disk until the run succeeds
  // (one Qwen3-30B-A3B layer: 0.6 GB of int8 codes).
  const uint64_t n_codes = static_cast<uint64_t>(q.rows * q.cols);
  const bool packed = q.bits >= 2 && q.bits <= 4 &&
                      std::all_of(q.codes, q.codes + n_codes, [](int8_t c) { return c >= -8 && c <= 7; });
  w.value(static_cast<uint8_t>(packed));
  if (packed)
    w.nibbles(q.codes, n_codes);
  else
    w.blob(q.codes, n_codes);
  w.blob(q.scales, n_scales * sizeof(float));
  w.blob(q.zero_points, q.zero_points ? n_scales : 0);
  w.blob(q.g_idx, q.g_idx ? static_cast<uint64_t>(q.cols) * sizeof(int32_t) : 0);
}

// Replays one recorded tensor into `writer` (views point into the record).
void replay_tensor(ByteReader& r, OutputWriter& writer) {
  const auto kind = r.value<uint8_t>();
  const std::string name = r.string();
  uint64_t n = 0;
  if (kind == 0) {
    xq_tensor_view v{};
    v.struct_size = sizeof(v);
    v.dtype = static_cast<xq_dtype>(r.value<uint32_t>());
    v.ndim = r.value<uint32_t>();
    if (v.ndim > sizeof(v.shape) / sizeof(v.shape[0])) fail(XQ_ERR_IO, "bad resume record for '{}'", name);
    for (uint32_t d = 0; d < v.ndim; ++d) v.shape[d] = r.value<int64_t>();
    v.data = const_cast<void*>(r.blob(&n));  // an input: the writer only reads it
    v.nbytes = n;
    writer.add_dense(name, v);
    return;
  }
  xq_quant_tensor q{};
  q.struct_size = sizeof(q);
  q.bits = r.value<uint32_t>();
  q.symmetric = r.value<uint32_t>();
  q.strategy = static_cast<xq_strategy>(r.value<int32_t>());
  q.rows = r.value<int64_t>();
  q.cols = r.value<int64_t>();
  q.group_size = r.value<int64_t>();
  q.n_groups = r.value<int64_t>();
  q.scale_dtype = static_cast<xq_dtype>(r.value<int32_t>());
  q.act_scheme = static_cast<xq_act_scheme>(r.value<int32_t>());
  q.act_bits = r.value<uint32_t>();
  q.input_scale = r.value<float>();
  // The writer only reads the buffers.
  std::vector<int8_t> unpacked;
  if (r.value<uint8_t>()) {
    const auto* p = static_cast<const unsigned char*>(r.blob(&n));
    const uint64_t count = static_cast<uint64_t>(q.rows * q.cols);
    if (q.rows <= 0 || q.cols <= 0 || n != (count + 1) / 2) fail(XQ_ERR_IO, "bad resume record for '{}'", name);
    unpacked.resize(static_cast<size_t>(count));
    auto sign4 = [](unsigned v) { return static_cast<int8_t>(static_cast<int>(v ^ 8u) - 8); };  // two's complement
    for (uint64_t i = 0; i < count; ++i) unpacked[i] = sign4((p[i / 2] >> (4 * (i % 2))) & 0xFu);
    q.codes = unpacked.data();
  } else {
    q.codes = static_cast<int8_t*>(const_cast<void*>(r.blob(&n)));
  }
  q.scales = static_cast<float*>(const_cast<void*>(r.blob(&n)));
  q.zero_points = static_cast<int8_t*>(const_cast<void*>(r.blob(&n)));
  if (!n) q.zero_points = nullptr;
  q.g_idx = static_cast<int32_t*>(const_cast<void*>(r.blob(&n)));
  if (!n) q.g_idx = nullptr;
  writer.add_quantized(name, q);
}

bool is_whole(const fs::path& file) {
  size_t size = 0;
  return read_whole(file, &size).has_value();
}

}  // namespace

fs::path resume_dir(const Pipeline& p) {
  fs::path out = p.output_path.lexically_normal();
  if (!out.has_filename()) out = out.parent_path();
  return out.parent_path() / (out.filename().string() + ".resume");
}

void remove_resume_checkpoint(const Pipeline& p) {
  std::error_code ec;
  fs::remove_all(resume_dir(p), ec);
  if (ec) logger().warn("cannot remove the resume checkpoint '{}': {}", resume_dir(p).string(), ec.message());
}

uint64_t run_fingerprint(const Pipeline& p, const Checkpoint& source, const std::vector<std::vector<int32_t>>& samples) {
  Fnv f;
  f.add_string(XQUANT_VERSION);
  f.add_string(fs::absolute(p.model_path).lexically_normal().string());
  f.add_string(p.loader);
  hash_model_files(f, p.model_path);
  for (const auto& t : source.tensors()) {
    f.add_string(t.name);
    f.add_value(static_cast<int>(t.dtype));
    for (auto d : t.shape) f.add_value(d);
    f.add_value(t.nbytes);
  }
  for (const auto& rule : p.rules) {
    for (const auto& stage : rule.stages) {
      f.add_string(stage.name);
      hash_kv(f, stage.validated_params);
    }
    hash_targets(f, rule.targets);
    hash_targets(f, rule.ignore);
    const WeightScheme& w = rule.weights;
    f.add_value(w.bits), f.add_value(w.symmetric), f.add_value(static_cast<int>(w.strategy));
    f.add_value(w.group_size), f.add_string(w.scale_dtype);
    if (w.type != "int") f.add_string(w.type);  // only then, so integer runs keep their fingerprints
    const ActivationScheme& a = rule.activations;
    f.add_value(a.enabled), f.add_value(a.bits), f.add_value(a.dynamic), f.add_string(a.strategy);
  }
  hash_targets(f, p.ignore);
  f.add_string(p.output_format);
  hash_kv(f, p.validated_output_params);
  // The calibration tokens stand for the text, tokenizer, samples, seq_len and seed.
  for (const auto& s : samples) {
    f.add_value(static_cast<uint64_t>(s.size()));
    f.add(s.data(), s.size() * sizeof(int32_t));
  }
  return f.h;
}

ResumeCheckpoint::ResumeCheckpoint(fs::path dir, uint64_t fingerprint, bool resume)
    : dir_(std::move(dir)), fingerprint_(fingerprint) {
  std::error_code ec;
  const bool present = fs::exists(dir_ / kRunFile, ec);
  if (resume && present) {
    load();
    return;
  }
  if (resume) logger().info("resume: no checkpoint in '{}'; starting from layer 0", dir_.string());
  else if (present)
    logger().warn("discarding the checkpoint of an earlier run in '{}' (pass --resume to continue it)", dir_.string());
  start_fresh();
}

fs::path ResumeCheckpoint::layer_file(int layer) const { return dir_ / fmt::format("layer-{:05}.bin", layer); }

void ResumeCheckpoint::start_fresh() {
  std::error_code ec;
  // Never remove a folder that is not ours (one a kill caught while writing
  // run.txt still is).
  const bool ours = !fs::exists(dir_, ec) || fs::is_empty(dir_, ec) || fs::exists(dir_ / kRunFile, ec) ||
                    fs::exists(dir_ / (std::string(kRunFile) + kTmpSuffix), ec);
  if (!ours)
    fail(XQ_ERR_INVALID_ARGUMENT,
         "'{}' exists and is not an xquant resume checkpoint; the run keeps its checkpoint there: move it away",
         dir_.string());
  fs::remove_all(dir_, ec);
  fs::create_directories(dir_, ec);
  if (ec) fail(XQ_ERR_IO, "cannot create the resume checkpoint folder '{}': {}", dir_.string(), ec.message());
  const std::string run = fmt::format("{:016x}\n", fingerprint_);
  AtomicFile f(dir_ / kRunFile);
  f.write(run.data(), run.size());
  f.commit();
}

void ResumeCheckpoint::load() {
  require_same_run();
  const int last = read_hidden_file();
  int whole = -1;  // layers 0..whole have whole files
  while (whole < last && is_whole(layer_file(whole + 1))) ++whole;
  if (whole < last) {
    logger().warn("resume: layer {}'s checkpoint is missing or damaged; starting from layer 0", whole + 1);
    hidden_.clear();
  }
  next_layer_ = whole < last ? 0 : last + 1;
  logger().info("resume: {} finished layer{} in '{}'; continuing at layer {}", next_layer_, next_layer_ == 1 ? "" : "s",
                dir_.string(), next_layer_);
}

void ResumeCheckpoint::require_same_run() const {
  size_t size = 0;
  auto run = read_whole(dir_ / kRunFile, &size);
  const std::string want = fmt::format("{:016x}\n", fingerprint_);
  const std::string have = run ? std::string(reinterpret_cast<const char*>(run->data()), size) : "(unreadable)";
  if (have != want)
    fail(XQ_ERR_INVALID_ARGUMENT,
         "cannot resume: the checkpoint in '{}' was made by a different run (fingerprint {}, this run {}): the "
         "pipeline, the model or the calibration data changed; remove that folder or run without --resume",
         dir_.string(), have.substr(0, 16), want.substr(0, 16));
}

int ResumeCheckpoint::read_hidden_file() {
  size_t size = 0;
  auto buf = read_whole(dir_ / kHiddenFile, &size);
  if (!buf) return -1;
  try {
    ByteReader r(reinterpret_cast<const char*>(buf->data()), size);
    char magic[8];
    for (char& c : magic) c = r.value<char>();
    if (std::memcmp(magic, kHiddenMagic, 8) != 0 || r.value<uint64_t>() != fingerprint_) return -1;
    const int layer = r.value<int32_t>();
    uint64_t n = 0;
    const void* data = r.blob(&n);
    hidden_.resize(static_cast<size_t>(n / sizeof(float)));
    std::memcpy(hidden_.data(), data, static_cast<size_t>(n));
    return layer;
  } catch (const Error&) {
    return -1;
  }
}

void ResumeCheckpoint::replay(int layer, OutputWriter& writer, RunReport& report) const {
  size_t size = 0;
  auto buf = read_whole(layer_file(layer), &size);
  if (!buf) fail(XQ_ERR_IO, "resume: cannot read '{}'", layer_file(layer).string());
  ByteReader r(reinterpret_cast<const char*>(buf->data()), size);
  char magic[8];
  for (char& c : magic) c = r.value<char>();
  if (std::memcmp(magic, kLayerMagic, 8) != 0 || r.value<uint64_t>() != fingerprint_ || r.value<int32_t>() != layer)
    fail(XQ_ERR_IO, "resume: '{}' does not belong to this run", layer_file(layer).string());
  report.quantized_input_bytes += r.value<uint64_t>();
  const auto n_lines = r.value<uint64_t>();
  for (uint64_t i = 0; i < n_lines; ++i) {
    LayerReport line;
    line.module = r.string();
    line.algorithm = r.string();
    line.scheme = r.string();
    line.rows = r.value<int64_t>();
    line.cols = r.value<int64_t>();
    line.rel_error = r.value<double>();
    report.layers.push_back(std::move(line));
  }
  const auto n_experts = r.value<uint64_t>();
  for (uint64_t i = 0; i < n_experts; ++i) {
    RunReport::Expert e;
    e.layer = r.value<int32_t>();
    e.expert = r.value<int32_t>();
    e.routed_tokens = r.value<uint64_t>();
    e.statistics = r.string();
    report.experts.push_back(std::move(e));
  }
  const auto n_tensors = r.value<uint64_t>();
  r.align();
  for (uint64_t i = 0; i < n_tensors; ++i) {
    replay_tensor(r, writer);
    r.align();
  }
}

void ResumeCheckpoint::record(OutputWriter& writer, const RunReport& report) {
  // The running layer's report lines start here (after any replayed layers').
  report_mark_ = report.layers.size();
  experts_mark_ = report.experts.size();
  bytes_mark_ = report.quantized_input_bytes;
  writer.set_recorder(
      [this](const std::string& name, const xq_tensor_view& v) {
        ByteWriter w;
        write_dense(w, name, v);
        w.align();
        recorded_ += w.bytes();
        ++recorded_count_;
      },
      [this](const std::string& module, const xq_quant_tensor& q) {
        ByteWriter w;
        write_quantized(w, module, q);
        w.align();
        recorded_ += w.bytes();
        ++recorded_count_;
      });
}

void ResumeCheckpoint::commit_layer(int layer, const std::vector<float>& next_input, const RunReport& report) {
  // The layer first: a kill between the two files leaves hidden.bin at the
  // previous layer, and the resumed run redoes this one.
  write_layer_file(layer, report);
  write_hidden_file(layer, next_input);
  recorded_.clear();
  recorded_count_ = 0;
  report_mark_ = report.layers.size();
  experts_mark_ = report.experts.size();
  bytes_mark_ = report.quantized_input_bytes;
}

void ResumeCheckpoint::write_layer_file(int layer, const RunReport& report) const {
  ByteWriter head;
  head.bytes().append(kLayerMagic, 8);
  head.value(fingerprint_);
  head.value(static_cast<int32_t>(layer));
  head.value(report.quantized_input_bytes - bytes_mark_);
  head.value(static_cast<uint64_t>(report.layers.size() - report_mark_));
  for (size_t i = report_mark_; i < report.layers.size(); ++i) {
    const LayerReport& line = report.layers[i];
    head.string(line.module);
    head.string(line.algorithm);
    head.string(line.scheme);
    head.value(line.rows);
    head.value(line.cols);
    head.value(line.rel_error);
  }
  head.value(static_cast<uint64_t>(report.experts.size() - experts_mark_));
  for (size_t i = experts_mark_; i < report.experts.size(); ++i) {
    const RunReport::Expert& e = report.experts[i];
    head.value(static_cast<int32_t>(e.layer));
    head.value(static_cast<int32_t>(e.expert));
    head.value(e.routed_tokens);
    head.string(e.statistics);
  }
  head.value(recorded_count_);
  head.align();  // the records are 8-byte aligned from their own start
  AtomicFile f(layer_file(layer));
  f.write(head.bytes().data(), head.bytes().size());
  f.write(recorded_.data(), recorded_.size());
  f.commit();
}

void ResumeCheckpoint::write_hidden_file(int layer, const std::vector<float>& next_input) const {
  ByteWriter head;
  head.bytes().append(kHiddenMagic, 8);
  head.value(fingerprint_);
  head.value(static_cast<int32_t>(layer));
  const uint64_t n = next_input.size() * sizeof(float);
  head.value(n);
  head.align();
  AtomicFile f(dir_ / kHiddenFile);
  f.write(head.bytes().data(), head.bytes().size());
  f.write(next_input.data(), static_cast<size_t>(n));
  f.commit();
}

}  // namespace xquant
