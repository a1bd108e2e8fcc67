// xq.cpp: the fuzz target for the `xq` loader plugin (plugins/xq): the input
// is written to a file and opened as a checkpoint through the real plugin
// (mmap, FlatBuffers Verifier, our bounds checks), then every tensor is read
// the ways the engine and `xquant convert` read them: converted to F32, as
// stored, as a canonical quantized tensor, and as the cpu provider's stored
// packed bytes handed to the cpu provider itself (qweight_adopt).
#include "fuzz_targets.hpp"

#include "fuzz_runtime.hpp"

#include "checkpoint/checkpoint.hpp"
#include "core/error.hpp"
#include "engine/kernels.hpp"

namespace xquant::fuzz {

void xq(const uint8_t* data, size_t size) {
  auto ck = Checkpoint::open(fuzz_runtime(), write_scratch(data, size, ".xq"), "xq");
  Kernels cpu(fuzz_runtime().plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, "cpu"));
  for (const auto& t : ck->tensors()) {
    try {
      (void)ck->read_f32(t);
    } catch (const Error&) {
    }
    (void)ck->raw(t);
    if (!t.has_quantized) continue;
    (void)ck->read_quantized(t);
    auto desc = sdk::make_struct<xq_quant_tensor>();
    auto bytes = sdk::make_struct<xq_tensor_view>();
    if (ck->read_packed(t, "cpu.int-blocks.v1", desc, bytes)) cpu.release(cpu.adopt(desc, "cpu.int-blocks.v1", bytes, t.name));
  }
}

}  // namespace xquant::fuzz
