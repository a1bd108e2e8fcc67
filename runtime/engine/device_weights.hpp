// device_weights.hpp: the element type dense Linear weights take on a device
// provider (ModelOptions::device_weights): F32, BF16, or "as stored".
#pragma once

#include <xquant/xq_abi.h>

#include <string_view>

namespace xquant {

class Checkpoint;

// "auto" -> XQ_DTYPE_INVALID (resolved per checkpoint by stored_float_weights),
// "bf16" -> BF16, "f32" -> F32; anything else is an XQ_ERR_INVALID_ARGUMENT
// naming `what` (the option or variable it came from).
xq_dtype device_weights_from_name(std::string_view name, std::string_view what);

// "As stored": BF16 when most bytes of the checkpoint's dense 2-D float
// tensors are BF16 (a BF16 checkpoint, or the embedding and lm_head of a
// compressed-tensors one), else F32 (F32 and F16 checkpoints stay exact:
// F16 -> BF16 would drop three mantissa bits).
xq_dtype stored_float_weights(const Checkpoint& checkpoint);

}  // namespace xquant
