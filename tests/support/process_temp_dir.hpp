// process_temp_dir.hpp: a scratch folder for this test process, removed when
// the process exits, so that helpers writing checkpoints for many tests do not
// leave a folder behind per ctest case (ctest starts one process per test:
// ~1,500 such folders, 1.2 GB, had piled up in /tmp on the dev box).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <unistd.h>

namespace xquant::test {

// temp_directory_path()/<prefix>_<pid>, made on first use and removed (with
// everything under it) at normal process exit of the process that made it
// (a forked child that exits normally must not delete its parent's files).
// A test killed by a signal still leaves it; the pid in the name keeps
// concurrent tests apart.
inline const std::filesystem::path& process_temp_dir(const std::string& prefix) {
  struct Removed {
    std::map<std::string, std::filesystem::path> dirs;
    pid_t owner = ::getpid();
    ~Removed() {
      if (::getpid() != owner) return;
      for (const auto& [name, dir] : dirs) {
        std::error_code ignored;  // nothing to report to at exit
        std::filesystem::remove_all(dir, ignored);
      }
    }
  };
  static Removed removed;
  auto [it, made] = removed.dirs.try_emplace(prefix);
  if (made) {
    it->second = std::filesystem::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(it->second);
  }
  return it->second;
}

}  // namespace xquant::test
