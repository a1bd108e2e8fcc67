// stored_layouts.hpp: whether a checkpoint stores Linears already packed in
// a kernel provider's own layout (the `xq` container's provider segments).
#pragma once

#include "checkpoint/architecture.hpp"
#include "checkpoint/checkpoint.hpp"
#include "engine/kernels.hpp"

#include <initializer_list>

namespace xquant {

// True when every Linear `members` of layer `d` is quantized and stored in
// the layout `kernels` would pack it into: the engine then loads them one by
// one as stored (Model::adopt_stored) instead of stacking q|k|v and gate|up,
// which would repack them.
bool stored_in_provider_layout(const Checkpoint& checkpoint, const Kernels& kernels, const LayerDesc& d,
                               std::initializer_list<int> members);

}  // namespace xquant
