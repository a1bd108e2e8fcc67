// fuzz_runtime.cpp: see fuzz_runtime.hpp.
#include "fuzz_runtime.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

namespace fs = std::filesystem;

namespace xquant::fuzz {

namespace {

// Removes the scratch files when the process ends.
struct ScratchFiles {
  std::set<std::string> paths;
  ~ScratchFiles() {
    std::error_code ec;
    for (const auto& p : paths) fs::remove_all(p, ec);
  }
};

ScratchFiles& scratch_files() {
  static ScratchFiles files;
  return files;
}

}  // namespace

Runtime& fuzz_runtime() {
  static Runtime& rt = [] () -> Runtime& {
    RuntimeOptions o;
    o.log_level = XQ_LOG_ERROR;
    o.threads = 1;
    o.load_default_plugins = false;
    static Runtime r(o);
    for (const char* name : {"gguf", "rtn", "compressed-tensors", "xq-loader", "cpu"}) {
      const fs::path file = fs::path(XQUANT_PLUGIN_DIR) / (std::string("libxquant-") + name + ".so");
      // Not an xquant::Error: a broken setup must not pass for a clean rejection.
      if (!r.plugins().load_file(file)) throw std::runtime_error("fuzz: cannot load plugin " + file.string());
    }
    return r;
  }();
  return rt;
}

namespace {

fs::path scratch_path(const std::string& suffix) {
  return fs::temp_directory_path() / ("xquant-fuzz-" + std::to_string(::getpid()) + suffix);
}

}  // namespace

fs::path scratch_folder(const std::string& suffix) {
  const fs::path dir = scratch_path(suffix);
  scratch_files().paths.insert(dir.string());
  fs::create_directories(dir);
  return dir;
}

std::string write_scratch(const uint8_t* data, size_t size, const std::string& suffix) {
  const std::string path = scratch_path(suffix).string();
  scratch_files().paths.insert(path);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!f) throw std::runtime_error("fuzz: cannot write " + path);
  return path;
}

}  // namespace xquant::fuzz
