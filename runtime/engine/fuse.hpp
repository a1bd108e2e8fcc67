// fuse.hpp: stacking the weights of Linears that read the same input (q|k|v,
// gate|up) into one weight, so a device provider runs them as one GEMM.
#pragma once

#include "core/memory.hpp"

#include <optional>
#include <string>
#include <vector>

namespace xquant {

// The quantized weights `parts` stacked along rows (out features), in order,
// into one tensor owning its buffers; nullopt with the reason in *why when
// they cannot share one description: different bits, symmetry, strategy,
// group size, columns, scale dtype or activation scheme, a per-tensor scale
// (one value per part), or act-order g_idx that differ (one permutation per
// weight; parts with the same g_idx, as GPTQ gives Linears that read the same
// input, stack with it).
std::optional<QuantTensor> stack_rows(const std::vector<const xq_quant_tensor*>& parts, std::string* why);

}  // namespace xquant
