// stored_layouts.hpp: whether a checkpoint stores Linears already packed in
// a kernel provider's own layout (the `xq` container's provider segments).
#pragma once

#include "checkpoint/architecture.hpp"
#include "checkpoint/checkpoint.hpp"
#include "engine/kernels.hpp"

#include <initializer_list>

namespace xquant {

// True when every Linear `members` of layer `d` is quantized and stored in
// the layout `kernels` would pack it into: the engine then takes them as
// stored (Model::adopt_stored) instead of stacking q|k|v and gate|up from
// canonical tensors, which would repack them.
bool stored_in_provider_layout(const Checkpoint& checkpoint, const Kernels& kernels, const LayerDesc& d,
                               std::initializer_list<int> members);

// XQUANT_STACK_STORED=1: a device provider with qweight_adopt_stacked takes
// stored q|k|v and gate|up as one weight each (Model::adopt_stored_stacked)
// rather than one by one.
bool stack_stored_weights();

}  // namespace xquant
