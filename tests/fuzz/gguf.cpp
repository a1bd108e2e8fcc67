// gguf.cpp: the fuzz target for the `gguf` loader plugin (plugins/gguf): the
// input is written to a file and opened as a checkpoint through the real
// plugin, in process, the way `xquant inspect` does; then every tensor is
// read the ways the pipeline reads them (converted to F32, as stored, and as
// a canonical quantized tensor where the loader offers one).
#include "fuzz_targets.hpp"

#include "fuzz_runtime.hpp"

#include "core/error.hpp"
#include "checkpoint/checkpoint.hpp"

namespace xquant::fuzz {

void gguf(const uint8_t* data, size_t size) {
  auto ck = Checkpoint::open(fuzz_runtime(), write_scratch(data, size, ".gguf"), "gguf");
  for (const auto& t : ck->tensors()) {
    // A tensor the loader cannot convert is refused with an Error; the
    // next one is still read.
    try {
      (void)ck->read_f32(t);
    } catch (const Error&) {
    }
    (void)ck->raw(t);
    if (t.has_quantized) (void)ck->read_quantized(t);
  }
}

}  // namespace xquant::fuzz
