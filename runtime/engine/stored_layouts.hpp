// stored_layouts.hpp: whether a checkpoint stores Linears already packed in
// a kernel provider's own layout (the `xq` container's provider segments).
#pragma once

#include "checkpoint/architecture.hpp"
#include "checkpoint/checkpoint.hpp"
#include "engine/kernels.hpp"

#include <vector>

namespace xquant {

// True when every Linear `members` of layer `d` is quantized and stored in
// the layout `kernels` would pack it into: the engine then takes them as
// stored (Model::adopt_stored) instead of stacking q|k|v and gate|up from
// canonical tensors, which would repack them.
bool stored_in_provider_layout(const Checkpoint& checkpoint, const Kernels& kernels, const LayerDesc& d,
                               const std::vector<int>& members);

// Whether a device provider with qweight_adopt_stacked takes stored q|k|v
// and gate|up as one weight each (Model::adopt_stored_stacked): yes unless
// XQUANT_STACK_STORED=0 (any other value than 0 or 1 is an error naming it).
bool stack_stored_weights();

}  // namespace xquant
