// provider_layouts.hpp: which kernel providers' packed layouts the xq writer
// stores beside each quantized tensor's canonical segment, and the packing
// itself: the cpu provider's (sdk/cpu_layout.hpp) and the cuda provider's
// (sdk/cuda_layout.hpp), each the very function its provider packs (or is
// checked to pack) with, so a matching provider takes the bytes as they are.
#pragma once

#include <xquant/sdk/host.hpp>
#include <xquant/xq_tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace xquant::xqc {

struct LayoutChoice {
  bool cpu = true;
  bool cuda = true;
  bool cuda_wgmma = false;  // the Hopper GEMM's copy of W4A16 weights (sdk/cuda_wgmma_layout.hpp): asked for
};

// Parses the writer's `layouts` parameter: a comma-separated subset of
// "cpu,cuda,cuda-wgmma" ("" or "none": canonical only).
LayoutChoice parse_layout_choice(const std::string& text);

struct PackedSegment {
  std::string layout;
  std::vector<uint8_t> bytes;
};

// The chosen layouts `q` packs into; a provider that would refuse the tensor
// gets no segment (logged at debug level with its reason).
std::vector<PackedSegment> pack_provider_layouts(const sdk::Host& host, const char* module, const xq_quant_tensor& q,
                                                 const LayoutChoice& choice);

}  // namespace xquant::xqc
