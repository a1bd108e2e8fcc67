// provider_layouts.cpp: the provider-packed segments of a quantized tensor
// (provider_layouts.hpp).
#include "provider_layouts.hpp"

#include <xquant/sdk/cpu_layout.hpp>
#include <xquant/sdk/cuda_layout.hpp>
#include <xquant/sdk/cuda_wgmma_layout.hpp>
#include <xquant/sdk/error.hpp>
#include <xquant/sdk/fp8.hpp>

#include <sstream>

namespace xquant::xqc {

LayoutChoice parse_layout_choice(const std::string& text) {
  LayoutChoice c{false, false, false};
  if (text.empty() || text == "none") return c;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item == "cpu") c.cpu = true;
    else if (item == "cuda") c.cuda = true;
    else if (item == "cuda-wgmma") c.cuda_wgmma = true;
    else
      throw sdk::Error(XQ_ERR_INVALID_ARGUMENT, "layouts: '" + item +
                                                    "' is not a provider with a stored layout (cpu, cuda, cuda-wgmma; "
                                                    "e.g. \"cpu,cuda\")");
  }
  return c;
}

std::vector<PackedSegment> pack_provider_layouts(const sdk::Host& host, const char* module, const xq_quant_tensor& q,
                                                 const LayoutChoice& choice) {
  std::vector<PackedSegment> out;
  auto skipped = [&](const char* layout, const sdk::Error& err) {
    host.log(XQ_LOG_DEBUG, sdk::format("%s: no %s segment: %s", module, layout, err.what()));
  };
  // FP8 has no cpu packed layout (the cpu provider runs the canonical bytes).
  if (choice.cpu && !sdk::is_float_code(q.bits)) {
    try {
      out.push_back({sdk::cpu_layout::kName, sdk::cpu_layout::serialize(sdk::cpu_layout::pack(q))});
    } catch (const sdk::Error& err) {
      skipped(sdk::cpu_layout::kName, err);
    }
  }
  if (choice.cuda) {
    try {
      sdk::cuda_layout::Packed p = sdk::cuda_layout::pack(q);
      out.push_back({sdk::cuda_layout::name_of(p.g.kind), std::move(p.bytes)});
    } catch (const sdk::Error& err) {
      skipped("cuda", err);
    }
  }
  if (choice.cuda_wgmma) {
    try {
      out.push_back({sdk::cuda_wgmma_layout::kName, sdk::cuda_wgmma_layout::pack(q)});
    } catch (const sdk::Error& err) {
      skipped(sdk::cuda_wgmma_layout::kName, err);
    }
  }
  return out;
}

}  // namespace xquant::xqc
