// plugin.cpp: the `gguf` format plugin's descriptor and params. The writer
// is writer.cpp; reading GGUF files is the `gguf` loader's job
// (../gguf/gguf_loader.cpp), so read_module() refuses.
#include "writer.hpp"

#include <xquant/sdk/plugin.hpp>

namespace xquant::gguf {

class Format : public sdk::PluginBase {
 public:
  using Writer = gguf::Writer;
  using sdk::PluginBase::PluginBase;

  std::unique_ptr<Writer> open_writer(const xq_writer_options& o) { return std::make_unique<Writer>(host, o); }
  uint32_t detect(const sdk::KvReader&) { return 0; }
  void read_module(const sdk::KvReader&, const xq_tensor_source&, const char* module, xq_quant_tensor&) {
    throw sdk::Error(XQ_ERR_UNSUPPORTED, std::string("gguf format: '") + module +
                                             "': GGUF files are read by the gguf loader, not through a format");
  }
};

// Capability strings are space-free tokens (`xquant plugins` lists them
// separated by spaces): which codes each block type holds exactly.
constexpr const char* kCapabilities[] = {"write:gguf",
                                         "types:F32,F16,BF16,Q8_0,Q4_0,Q4_1,Q5_0,Q5_1,Q4_K,Q5_K,Q6_K",
                                         "exact:Q4_0=int2-4-sym",
                                         "exact:Q5_0=int5-sym",
                                         "exact:Q8_0=int6-8-sym",
                                         "exact:Q4_1=int2-4-asym",
                                         "exact:Q5_1=int5-asym",
                                         nullptr};

constexpr xq_param_spec kParams[] = {
    {"type", XQ_VALUE_STRING, "auto",
     "GGUF type of the quantized Linears: auto (the block type whose grid holds the codes exactly, else Q8_0), "
     "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K; codes on the type's grid convert "
     "exactly, others are requantized"},
    {"exact", XQ_VALUE_BOOL, "false", "fail instead of requantizing a weight that is not exact in the chosen type"},
    {"importance", XQ_VALUE_BOOL, "true",
     "weight the requantization of each Linear by its calibration statistic (sum of x^2 per input column), as "
     "llama-quantize --imatrix does, when the pipeline calibrates"},
    {"imatrix", XQ_VALUE_STRING, nullptr,
     "weight the requantization by this llama.cpp importance matrix (llama-imatrix's .gguf or legacy .dat), "
     "instead of the run's calibration statistics"},
    {"imatrix_out", XQ_VALUE_STRING, nullptr,
     "also write the run's calibration statistics here as a llama.cpp imatrix .gguf (llama-quantize --imatrix "
     "reads it)"},
    {"tokenizer", XQ_VALUE_STRING, nullptr,
     "take the vocabulary from this .gguf file, tokenizer.json or folder holding one (for sources without one)"},
    {nullptr, XQ_VALUE_NONE, nullptr, nullptr}};

constexpr xq_plugin_descriptor kDescriptor = sdk::describe<Format>(
    XQ_PLUGIN_FORMAT, "gguf", "1.0.0",
    "GGUF v3 files for llama.cpp: exact Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 from our codes, requantized K-quants",
    kCapabilities, kParams, &sdk::FormatAdapter<Format>::vtable);

}  // namespace xquant::gguf

XQ_SDK_ENTRY(xquant::gguf::kDescriptor)
