// format_plugin.cpp: the `xq` format plugin: writes the native xq container
// (writer.cpp). Reading is the `xq` loader's (loader.cpp): an .xq file's
// manifest, not its model configuration, describes each quantized tensor, so
// the loader hands out canonical tensors itself (read_quantized) and
// detect() never claims a configuration.
#include "writer.hpp"

#include <xquant/sdk/plugin.hpp>

namespace xquant::xqc {
namespace {

class Format : public sdk::PluginBase {
 public:
  using Writer = xqc::Writer;
  using sdk::PluginBase::PluginBase;

  std::unique_ptr<Writer> open_writer(const xq_writer_options& o) { return std::make_unique<Writer>(host, o); }
  uint32_t detect(const sdk::KvReader&) { return 0; }
  void read_module(const sdk::KvReader&, const xq_tensor_source&, const char* module, xq_quant_tensor&) {
    throw sdk::Error(XQ_ERR_NOT_FOUND, std::string("module '") + module + "' is read by the xq loader");
  }
};

constexpr const char* kCapabilities[] = {"write:xq", "layout:canonical", "layout:cpu.int-blocks.v1",
                                         "layout:cuda.w4a16-mma.v1", "layout:cuda.w8a8-int8-nk.v1",
                                         "layout:cuda.w8a8-fp8-nk.v1", "layout:cuda.w4a16-wgmma.v1", "bits:2-8",
                                         "type:float",
                                         "strategy:tensor,channel,group",
                                         "act:int8-dynamic-token,int8-static-tensor,fp8-dynamic-token",
                                         "g_idx", "ragged-groups", nullptr};

constexpr xq_param_spec kParams[] = {
    {"alignment", XQ_VALUE_INT, "64",
     "byte alignment of every data segment (a power of two from 64 to 65536; 4096 aligns segments to pages)"},
    {"provider_layouts", XQ_VALUE_BOOL, "true",
     "also store each quantized weight packed in the cpu provider's layout (cpu.int-blocks.v1), so loading on "
     "that provider does no packing"},
    {"layouts", XQ_VALUE_STRING, "cpu,cuda",
     "which providers' packed layouts provider_layouts stores: a comma-separated subset of cpu (cpu.int-blocks.v1) "
     "and cuda (cuda.w4a16-mma.v1, cuda.w8a8-int8-nk.v1, cuda.w8a8-fp8-nk.v1); each costs about the canonical "
     "codes' size again; cuda-wgmma (cuda.w4a16-wgmma.v1, not by default) adds the copy of W4A16 weights the "
     "cuda provider's Hopper GEMM reads at 64 rows and more (without it a weight taken as stored runs the older "
     "kernels there)"},
    {"pack_batch", XQ_VALUE_INT, "0",
     "quantized tensors packed together, one per thread of the pool (0: twice the threads; 1: each as it "
     "arrives); the file's bytes are the same for every value"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<Format>(
    XQ_PLUGIN_FORMAT, "xq", "1.0.0",
    "the native xq container: FlatBuffers manifest + aligned segments, canonical and provider-packed weights",
    kCapabilities, kParams, &sdk::FormatAdapter<Format>::vtable);

}  // namespace
}  // namespace xquant::xqc

XQ_SDK_ENTRY(xquant::xqc::kDescriptor)
