// hf_folder_stage.cpp: see hf_folder_stage.hpp.
#include "hf_folder_stage.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

namespace fs = std::filesystem;

namespace xquant::ct {

namespace {

// model.safetensors, its index, or a shard "model-<digits>-of-<digits>.safetensors".
bool is_model_file(const std::string& name) {
  if (name == "model.safetensors" || name == "model.safetensors.index.json") return true;
  const std::string pre = "model-", mid = "-of-", suf = ".safetensors";
  if (name.size() <= pre.size() + mid.size() + suf.size() || name.compare(0, pre.size(), pre) != 0 ||
      name.compare(name.size() - suf.size(), suf.size(), suf) != 0)
    return false;
  std::string core = name.substr(pre.size(), name.size() - pre.size() - suf.size());
  size_t at = core.find(mid);
  if (at == std::string::npos || at == 0 || at + mid.size() == core.size()) return false;
  auto digits = [](const std::string& s) { return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }); };
  return digits(core.substr(0, at)) && digits(core.substr(at + mid.size()));
}

void fsync_file(const fs::path& p) {
  sdk::safetensors::Fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0)
    throw sdk::Error(XQ_ERR_IO, p.string() + ": fsync failed: " + std::strerror(errno));
}

// The companion files beside the source's weights; none for a source that
// is not a HF folder (a GGUF file's folder is not a checkpoint).
std::vector<fs::path> companion_sources(const fs::path& source) {
  std::vector<fs::path> out;
  if (source.empty()) return out;
  std::error_code ec;
  fs::path dir;
  if (fs::is_directory(source, ec)) dir = source;
  else if (source.extension() == ".safetensors" || source.filename() == "model.safetensors.index.json")
    dir = source.parent_path();
  else
    return out;
  for (const char* name : kCompanionFiles)
    if (fs::is_regular_file(dir / name, ec)) out.push_back(dir / name);
  return out;
}

}  // namespace

HfFolderStage::HfFolderStage(fs::path out_dir) : out_dir_(std::move(out_dir)) {
  std::error_code ec;
  if (!fs::exists(out_dir_, ec)) {
    fs::create_directories(out_dir_, ec);
    if (ec) throw sdk::Error(XQ_ERR_IO, "cannot create '" + out_dir_.string() + "': " + ec.message());
    created_dir_ = true;
  } else if (!fs::is_directory(out_dir_, ec)) {
    throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "'" + out_dir_.string() + "' exists and is not a directory");
  }
}

fs::path HfFolderStage::temp_path(const std::string& final_name) const {
  return out_dir_ / sdk::format(".%s.%ld.tmp", final_name.c_str(), static_cast<long>(::getpid()));
}

void HfFolderStage::stage_text(const std::string& final_name, const std::string& content) {
  fs::path tmp = temp_path(final_name);
  staged_.emplace_back(tmp, out_dir_ / final_name);
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  f.write(content.data(), static_cast<std::streamsize>(content.size()));
  f.close();
  if (!f) throw sdk::Error(XQ_ERR_IO, tmp.string() + ": write failed");
  fsync_file(tmp);
}

void HfFolderStage::stage_companions(const fs::path& source, const SourceModel& model) {
  bool have_tokenizer_json = false;
  for (const auto& src : companion_sources(source)) {
    fs::path tmp = temp_path(src.filename().string());
    staged_.emplace_back(tmp, out_dir_ / src.filename());
    std::error_code ec;
    fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) throw sdk::Error(XQ_ERR_IO, "cannot copy '" + src.string() + "': " + ec.message());
    fsync_file(tmp);
    if (src.filename() == "tokenizer.json") have_tokenizer_json = true;
  }
  if (have_tokenizer_json) return;
  if (!model.tokenizer_json.empty()) return stage_text("tokenizer.json", model.tokenizer_json);
  for (const auto& [name, text] : model.synthesized_tokenizer_files) stage_text(name, text);
}

void HfFolderStage::publish(const std::vector<std::string>& shard_names, const std::function<void()>& commit_shards) {
  std::set<std::string> new_names(shard_names.begin(), shard_names.end());
  for (const auto& [tmp, fin] : staged_) new_names.insert(fin.filename().string());
  std::vector<fs::path> stale;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_dir_, ec)) {
    std::string name = e.path().filename().string();
    if (is_model_file(name) && !new_names.count(name)) stale.push_back(e.path());
  }
  commit_shards();
  std::stable_partition(staged_.begin(), staged_.end(),
                        [](const auto& p) { return p.second.filename() != "config.json"; });
  for (const auto& [tmp, fin] : staged_) {
    fs::rename(tmp, fin, ec);
    if (ec) throw sdk::Error(XQ_ERR_IO, "cannot rename '" + tmp.string() + "' to '" + fin.string() + "': " + ec.message());
  }
  staged_.clear();
  for (const auto& s : stale) fs::remove(s, ec);
  sdk::safetensors::Writer::fsync_dir(out_dir_);
}

void HfFolderStage::abort() noexcept {
  for (const auto& [tmp, fin] : staged_) ::unlink(tmp.c_str());
  staged_.clear();
  if (created_dir_) {
    std::error_code ec;
    if (fs::is_empty(out_dir_, ec)) fs::remove(out_dir_, ec);
  }
}

}  // namespace xquant::ct
