// rtn_plugin.cpp: the `rtn` algorithm plugin: data-free round-to-nearest,
// INT2..INT8, symmetric or asymmetric, per tensor / channel / group. The
// math is in rtn_math.cpp; this file adapts it to the ABI, spreads rows over
// the host's threads and reports each Linear's relative weight error.
#include "rtn_math.hpp"

#include <xquant/sdk/plugin.hpp>

#include <cmath>
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
    const xq_quant_scheme& sc = in.scheme;
    const xq_tensor_view& w = in.weight;
    if (w.dtype != XQ_DTYPE_F32 || w.ndim != 2)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: rtn takes a 2-D F32 weight", in.name));
    if (sc.bits < 2 || sc.bits > 8)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: bits must be 2..8, got %u", in.name, sc.bits));
    if (sc.granularity == XQ_GRAN_GROUP && sc.group_size <= 0)
      fail(XQ_ERR_INVALID_ARGUMENT, format("%s: group granularity needs group_size > 0", in.name));
    if (sc.granularity == XQ_GRAN_BLOCK)
      fail(XQ_ERR_UNSUPPORTED, format("%s: rtn does not do block granularity", in.name));

    xquant::rtn::Scheme s;
    s.bits = static_cast<int>(sc.bits);
    s.symmetric = sc.symmetric != 0;
    s.granularity = sc.granularity;
    s.group_size = sc.group_size;
    s.scale_dtype = sc.scale_dtype == XQ_DTYPE_INVALID ? XQ_DTYPE_F32 : sc.scale_dtype;

    const int64_t rows = w.shape[0], cols = w.shape[1];
    const int64_t ng = s.granularity == XQ_GRAN_TENSOR ? 1 : xquant::rtn::groups_per_row(s, cols);
    const int64_t n_scales = s.granularity == XQ_GRAN_TENSOR ? 1 : rows * ng;

    xq_quant_tensor q{};
    q.struct_size = sizeof(q);
    try {
      q.codes = host.alloc<int8_t>(static_cast<size_t>(rows * cols));
      q.scales = host.alloc<float>(static_cast<size_t>(n_scales));
      if (!s.symmetric) q.zero_points = host.alloc<int8_t>(static_cast<size_t>(n_scales));
      const float* data = static_cast<const float*>(w.data);
      xquant::rtn::ErrorSums total;
      if (s.granularity == XQ_GRAN_TENSOR) {
        total = xquant::rtn::quantize_tensor(s, data, rows, cols, q.codes, q.scales, q.zero_points);
      } else {
        std::mutex m;
        host.parallel_for(static_cast<uint64_t>(rows), 16, [&](uint64_t b, uint64_t e) {
          auto part = xquant::rtn::quantize_rows(s, data, cols, static_cast<int64_t>(b), static_cast<int64_t>(e),
                                                 q.codes, q.scales, q.zero_points);
          std::lock_guard<std::mutex> lock(m);
          total.diff2 += part.diff2;
          total.ref2 += part.ref2;
        });
      }
      q.bits = sc.bits;
      q.symmetric = s.symmetric ? 1 : 0;
      q.granularity = s.granularity;
      q.rows = rows;
      q.cols = cols;
      q.group_size = s.granularity == XQ_GRAN_GROUP ? s.group_size : cols;
      q.n_groups = ng;
      q.scale_dtype = s.scale_dtype;
      q.act_scheme = sc.act_scheme;
      q.act_bits = sc.act_scheme == XQ_ACT_NONE ? 0 : (sc.act_bits ? sc.act_bits : 8);
      out.quant = q;
      out.rel_error = total.ref2 > 0 ? std::sqrt(total.diff2 / total.ref2) : 0.0;
    } catch (...) {
      release_quant_tensor(host, q);
      throw;
    }
  }
};

constexpr const char* kCapabilities[] = {"bits:2-8", "symmetric", "asymmetric", "granularity:tensor",
                                         "granularity:channel", "granularity:group", "data-free", nullptr};

constexpr xq_plugin_descriptor kDescriptor = describe<RtnAlgorithm>(
    XQ_PLUGIN_ALGORITHM, "rtn", "1.0.0",
    "round-to-nearest, INT2-INT8, sym/asym, per tensor/channel/group (compressed-tensors arithmetic)",
    kCapabilities, nullptr, &AlgorithmAdapter<RtnAlgorithm>::vtable);

}  // namespace

XQ_SDK_ENTRY(kDescriptor)
