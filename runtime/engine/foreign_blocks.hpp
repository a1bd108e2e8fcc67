// foreign_blocks.hpp: handing a checkpoint's block-quantized tensors (GGUF
// Q4_0, Q8_0, Q4_K, Q6_K, ...) to the kernel provider as they are stored
// (xq_block_tensor), so a provider that runs them (`cpu`) executes them in
// their own layout, borrowing the loader's read-only mapping: no F32 copy
// and no second copy of the weights. Providers that do not run them get the
// F32 weights the loader dequantizes (the shared GGUF dequantizer), as
// before.
#pragma once

#include "checkpoint/checkpoint.hpp"

#include <xquant/xq_tensor.h>

#include <cstdint>
#include <optional>
#include <string>

namespace xquant {

// ggml's type id for a storage type name ("Q4_K" -> 12), 0 when the name is
// not a ggml block type.
uint32_t ggml_block_type_id(const std::string& name);

// The stored bytes of a 2-D block-quantized GGUF tensor, described for a
// provider (borrowed from the loader: valid while `cp` is open); nullopt
// for any other tensor.
std::optional<xq_block_tensor> foreign_blocks(const Checkpoint& cp, const TensorEntry& te);

}  // namespace xquant
