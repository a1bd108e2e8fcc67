// fuzz_runtime.hpp: what the targets that go through the runtime share.
#pragma once

#include "core/runtime.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace xquant::fuzz {

// One runtime per process with exactly the plugins the targets use (gguf,
// rtn, compressed-tensors) loaded from the build's plugin folder, one
// thread, errors-only logging.
Runtime& fuzz_runtime();

// Writes `data` to this process's scratch file named for `suffix` (the same
// file every call, removed at exit) and returns its path: loaders open paths.
std::string write_scratch(const uint8_t* data, size_t size, const std::string& suffix);

// This process's scratch folder named for `suffix`, created on first use and
// removed with its contents at exit.
std::filesystem::path scratch_folder(const std::string& suffix);

}  // namespace xquant::fuzz
