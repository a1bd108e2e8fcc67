// rtn_plugin.cpp: the `rtn` algorithm plugin: data-free round-to-nearest,
// INT2..INT8, symmetric or asymmetric, per tensor / channel / group, with
// the compressed-tensors arithmetic of sdk/include/xquant/sdk/quantizer.hpp
// (the same code the calibration algorithms quantize with), and FP8 E4M3
// per channel / tensor (sdk/include/xquant/sdk/quantizer_fp8.hpp, the
// compressed-tensors FP8_DYNAMIC weights). Spreads rows over the host's
// threads and reports each Linear's relative weight error.
#include <xquant/sdk/plugin.hpp>
#include <xquant/sdk/quantizer.hpp>
#include <xquant/sdk/quantizer_fp8.hpp>

#include <mutex>

namespace {

using namespace xquant::sdk;

class RtnAlgorithm : public PluginBase {
 public:
  using PluginBase::PluginBase;

  uint32_t needs(const KvReader&) { return 0; }  // data-free

  void quantize(const KvReader&, xq_layer_group& group, xq_linear_output* outs) {
    for (uint64_t i = 0; i < group.n_linears; ++i) quantize_one(group.linears[i], outs[i]);
  }

 private:
  void quantize_one(const xq_linear_input& in, xq_linear_output& out) {
    quant::check_weight(in);
    const quant::Scheme s = quant::scheme_from(in.scheme, in.name, /*allow_fp8=*/true);
    const int64_t rows = in.weight.shape[0], cols = in.weight.shape[1];
    const float* w = static_cast<const float*>(in.weight.data);
    QuantTensor owner(host);  // frees the buffers if anything below throws
    xq_quant_tensor& q = owner.get();
    quant::alloc_quant(host, s, in.scheme, rows, cols, q);
    quant::ErrorSums total;
    if (s.strategy == XQ_STRATEGY_TENSOR) {
      total = s.fp8 ? quant::rtn_fp8_tensor(s, w, rows, cols, q.codes, q.scales)
                    : quant::rtn_tensor_sums(s, w, rows, cols, q.codes, q.scales, q.zero_points);
    } else {
      std::mutex m;
      host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
        const auto r0 = static_cast<int64_t>(b), r1 = static_cast<int64_t>(e);
        auto part = s.fp8 ? quant::rtn_fp8_rows(s, w, cols, r0, r1, q.codes, q.scales)
                          : quant::rtn_rows_sums(s, w, cols, r0, r1, q.codes, q.scales, q.zero_points);
        std::lock_guard<std::mutex> lock(m);
        total.add(part);
      });
    }
    out.quant = owner.release();
    out.rel_error = total.rel();
  }
};

constexpr const char* kCapabilities[] = {"bits:2-8", "symmetric", "asymmetric", "strategy:tensor",
                                         "strategy:channel", "strategy:group", "type:float", "data-free", nullptr};

constexpr xq_plugin_descriptor kDescriptor = describe<RtnAlgorithm>(
    XQ_PLUGIN_ALGORITHM, "rtn", "1.0.0",
    "round-to-nearest, INT2-INT8 sym/asym per tensor/channel/group, FP8 E4M3 per tensor/channel "
    "(compressed-tensors arithmetic)",
    kCapabilities, nullptr, &AlgorithmAdapter<RtnAlgorithm>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
