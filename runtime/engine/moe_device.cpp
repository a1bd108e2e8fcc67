// moe_device.cpp: the Mixture-of-Experts block on a device kernel provider
// (`cuda`): the same block as moe_layer.cpp (transformers'
// Qwen3MoeSparseMoeBlock, Qwen2MoeSparseMoeBlock, MixtralSparseMoeBlock)
// with every step a provider op on device memory:
//
//   1. the router GEMM (a Linear like any other), then XQ_OP_MOE_ROUTE:
//      softmax, top-k ids and combine weights per row;
//   2. routed experts, one of two ways:
//      - fused (experts the provider's moe_qmatmul takes: quantized ones,
//        e.g. cuda-w4a16-mma, or dense BF16/F16 device weights passed as
//        xq_moe_op.dense_experts): gate and up as one moe_qmatmul over all
//        experts (each expert's two weights stacked at load,
//        engine/moe_stacking.cpp; else one call each), SWIGLU, down with
//        the weighted combine inside, added to the residual stream; no host round trip, so a decode step can be
//        recorded as a CUDA graph (vLLM's fused_moe scheme,
//        vllm/model_executor/layers/fused_moe/fused_moe.py);
//      - looped (F32 experts, or quantized ones moe_qmatmul refuses):
//        the expert ids come back to the host (one small download per
//        layer), rows are sorted by expert, gathered with GET_ROWS, each used
//        expert runs its own GEMMs on its contiguous run of rows, and
//        XQ_OP_MOE_COMBINE adds the weighted rows back in slot order;
//   3. the shared expert (Qwen2-MoE) over all rows, added with
//      XQ_OP_MOE_COMBINE's sigmoid of shared_expert_gate.
#include "engine/model.hpp"

#include "core/error.hpp"
#include "core/log.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <tuple>

namespace xquant {

namespace {

uint64_t aligned(uint64_t n) { return (n + 255) / 256 * 256; }

// Dense (BF16/F16) experts take the grouped GEMM while it beats one cuBLAS
// GEMM per expert. The loop's floor is about one launch per expert or one
// read of every expert's weights, so it scales with the expert count, while
// the grouped kernel's time grows with the routed rows. Measured on the H200
// (bench/cuda/bench_moe.py, gate|up, docs/results.md): Qwen3-30B-A3B shapes
// (128 experts) fused 874 / 1711 / 3384 us against the loop's 2567 / 2586 /
// 2463 us at 128 / 256 / 512 tokens per expert; Mixtral shapes (8 experts)
// fused 495 / 642 us against 474 / 483 us at 16 / 32. Hence up to
// max(32, 2 x experts) tokens per expert on average. Quantized experts always
// fuse, as before (a per-expert loop of quantized GEMMs was not measured).
bool fused_pays(const LinearWeights& first_expert, int64_t routed_rows, int64_t n_experts) {
  const int64_t tokens_per_expert_limit = std::max<int64_t>(32, 2 * n_experts);
  return first_expert.q || routed_rows <= tokens_per_expert_limit * n_experts;
}

// Consecutive 256-byte-aligned regions of one scratch buffer.
class Carve {
 public:
  explicit Carve(char* base) : at_(base) {}
  template <class T>
  T* take(int64_t n) {
    T* p = reinterpret_cast<T*>(at_);
    at_ += aligned(static_cast<uint64_t>(n) * sizeof(T));
    return p;
  }

 private:
  char* at_;
};

// One Linear of every expert (gate, up or down) as moe_qmatmul takes it:
// prepared quantized weights, or device pointers to dense BF16/F16 weights.
struct ExpertSet {
  std::vector<const xq_qweight*> q;
  std::vector<const void*> dense;
};

void add_expert(ExpertSet& s, const LinearWeights& lw) {
  if (lw.q) s.q.push_back(lw.q);
  else s.dense.push_back(lw.dw.data());
}

ExpertSet expert_set(const LayerWeights& W, const std::vector<int>& linears) {
  ExpertSet s;
  for (int i : linears) add_expert(s, W.linears[static_cast<size_t>(i)]);
  return s;
}

ExpertSet expert_set(const std::vector<LinearWeights>& experts) {
  ExpertSet s;
  for (const LinearWeights& lw : experts) add_expert(s, lw);
  return s;
}

// The weights expert e's forward reads: its stacked gate|up and down, or
// gate, up and down (engine/moe_stacking.cpp).
std::vector<const LinearWeights*> expert_weights(const LayerWeights& W, const MoeDesc& m, int64_t e) {
  auto lin = [&](int i) { return &W.linears[static_cast<size_t>(i)]; };
  if (!W.expert_gate_up.empty()) return {&W.expert_gate_up[static_cast<size_t>(e)], lin(m.down[e])};
  return {lin(m.gate[e]), lin(m.up[e]), lin(m.down[e])};
}

xq_moe_op moe_op(const ExpertSet& set, int64_t top_k) {
  xq_moe_op op{};
  op.struct_size = sizeof(xq_moe_op);
  op.n_experts = static_cast<uint32_t>(set.q.empty() ? set.dense.size() : set.q.size());
  op.top_k = static_cast<uint32_t>(top_k);
  op.experts = set.q.empty() ? nullptr : set.q.data();
  op.dense_experts = set.q.empty() ? set.dense.data() : nullptr;
  return op;
}

}  // namespace

bool Model::moe_experts_fuse(int layer) const {
  const MoeDesc& m = arch_.layers.at(static_cast<size_t>(layer)).experts;
  const LayerWeights& W = layers_[static_cast<size_t>(layer)];
  const LinearWeights& g0 = *expert_weights(W, m, 0).front();
  const char* no = nullptr;
  for (int64_t e = 0; e < m.n_experts && !no; ++e)
    for (const LinearWeights* lw : expert_weights(W, m, e)) {
      if (!lw->q != !g0.q || lw->act != g0.act || !lw->bias.empty() || (!lw->q && !lw->dw.data()))
        no = "not all quantized or all dense on the device, with one activation dtype and no bias";
    }
  if (!no && !g0.q && g0.act == XQ_DTYPE_F32) no = "dense F32 experts (the grouped GEMM takes BF16/F16)";
  // The loop on request: the "before" baseline of bench/engine/gpu_moe_engine.sh.
  if (const char* env = std::getenv("XQUANT_MOE_PER_EXPERT"); env && std::string(env) == "1")
    no = "XQUANT_MOE_PER_EXPERT=1";
  std::string why;
  if (!no) {
    // Shapes with no rows: the provider validates the experts and the
    // operands' dtypes and returns before touching memory.
    float* const probe = support_probe();
    const int64_t H = arch_.hidden, I = m.expert_intermediate, k = m.top_k;
    const bool stacked = !W.expert_gate_up.empty();
    for (const bool down : {false, true}) {
      const ExpertSet experts = down ? expert_set(W, m.down) : stacked ? expert_set(W.expert_gate_up) : expert_set(W, m.gate);
      xq_moe_op op = moe_op(experts, k);
      op.x = dtensor(g0.act, {0, down ? I : H}, probe);
      op.expert_ids = dtensor(XQ_DTYPE_I32, {0, k}, probe);
      if (down) op.weights = dtensor(XQ_DTYPE_F32, {0, k}, probe);
      op.dst = dtensor(g0.act, {0, down ? H : stacked ? 2 * I : I}, probe);
      if (kernels_->try_moe(op, &why) != XQ_OK) {
        no = "refused by the provider's moe_qmatmul";
        break;
      }
    }
  }
  if (no)
    logger().info("layer {}: {} experts run one GEMM per expert on '{}' ({}{}{}): the expert ids come back to the host "
                  "once per layer", layer, m.n_experts, kernels_->name(), no, why.empty() ? "" : ": ", why);
  return !no;
}

void Model::moe_forward_device(int layer, const float* h, int64_t rows, float* x) const {
  const MoeDesc& m = arch_.layers.at(static_cast<size_t>(layer)).experts;
  const LayerWeights& W = layers_[static_cast<size_t>(layer)];
  const int64_t E = m.n_experts, k = m.top_k;
  Carve c(static_cast<char*>(scratch(kMoe, aligned(rows * E * 4) + 2 * aligned(rows * k * 4))));
  float* logits = c.take<float>(rows * E);
  auto* ids = c.take<int32_t>(rows * k);
  float* weights = c.take<float>(rows * k);

  linear(W.linears[static_cast<size_t>(m.router)], h, rows, logits, "router (mlp.gate)");
  xq_op op = Kernels::op(XQ_OP_MOE_ROUTE);
  op.src[0] = f32({rows, E}, logits);
  op.dst = dtensor(XQ_DTYPE_I32, {rows, k}, ids);
  op.src[1] = f32({rows, k}, weights);
  op.i[0] = m.norm_topk_prob ? 1 : 0;
  kernels_->run(op, "MOE_ROUTE");

  if (W.experts_fused && fused_pays(*expert_weights(W, m, 0).front(), rows * k, E))
    moe_experts_fused(layer, h, rows, ids, weights, x);
  else
    moe_experts_looped(layer, h, rows, ids, weights, x);
  if (m.shared_gate >= 0) moe_shared_expert_device(layer, h, rows, x);
}

void Model::moe_experts_fused(int layer, const float* h, int64_t rows, const int32_t* ids, const float* weights,
                              float* x) const {
  const MoeDesc& m = arch_.layers.at(static_cast<size_t>(layer)).experts;
  const LayerWeights& W = layers_[static_cast<size_t>(layer)];
  const int64_t H = arch_.hidden, I = m.expert_intermediate, k = m.top_k, slots = rows * k;
  const xq_dtype t = expert_weights(W, m, 0).front()->act;  // the experts' QMATMUL activation dtype
  const bool stacked = !W.expert_gate_up.empty();
  const int64_t eb = t == XQ_DTYPE_F32 ? 4 : 2;  // bytes per activation element
  // gu: gate's and up's outputs, [slots, 2I] from the stacked experts (the
  // halves side by side in each row) or [slots, I] each, up's 256-byte
  // aligned after gate's (the grouped GEMMs take 16-byte aligned outputs).
  const int64_t half = static_cast<int64_t>(aligned(slots * I * eb));
  Carve c(static_cast<char*>(scratch(kMoeExperts, aligned(rows * H * eb) * 2 + aligned(2 * half) +
                                                      (stacked ? aligned(slots * I * eb) : 0))));
  void* xb = c.take<char>(rows * H * eb);
  char* gu = c.take<char>(2 * half);
  void* y = c.take<char>(rows * H * eb);

  xq_op cv = Kernels::op(XQ_OP_CONVERT);
  cv.src[0] = f32({rows * H}, h);
  cv.dst = dtensor(t, {rows * H}, xb);
  kernels_->run(cv, "CONVERT (experts' input)");
  const xq_device_tensor id_t = dtensor(XQ_DTYPE_I32, {rows, k}, ids);
  auto gate_or_up = [&](const ExpertSet& set, int64_t n, void* out, const char* what) {
    xq_moe_op op = moe_op(set, k);
    op.x = dtensor(t, {rows, H}, xb);
    op.expert_ids = id_t;
    op.dst = dtensor(t, {slots, n}, out);
    kernels_->run_moe(op, what);
  };
  xq_op sw = Kernels::op(XQ_OP_SWIGLU);
  if (stacked) {
    gate_or_up(expert_set(W.expert_gate_up), 2 * I, gu, "moe_qmatmul (experts' gate|up_proj)");
    sw.src[0] = column_slice(t, slots, I, 2 * I, gu);
    sw.src[1] = column_slice(t, slots, I, 2 * I, gu + I * eb);
    sw.dst = dtensor(t, {slots, I}, c.take<char>(slots * I * eb));
  } else {
    gate_or_up(expert_set(W, m.gate), I, gu, "moe_qmatmul (experts' gate_proj)");
    gate_or_up(expert_set(W, m.up), I, gu + half, "moe_qmatmul (experts' up_proj)");
    sw.src[0] = dtensor(t, {slots, I}, gu);
    sw.src[1] = dtensor(t, {slots, I}, gu + half);
    sw.dst = sw.src[0];
  }
  kernels_->run(sw, "SWIGLU (experts)");
  const ExpertSet down = expert_set(W, m.down);
  xq_moe_op op = moe_op(down, k);
  op.x = sw.dst;
  op.expert_ids = id_t;
  op.weights = f32({rows, k}, weights);
  op.dst = dtensor(t, {rows, H}, y);
  kernels_->run_moe(op, "moe_qmatmul (experts' down_proj + combine)");
  add_residual(x, y, t, rows);
}

void Model::moe_experts_looped(int layer, const float* h, int64_t rows, const int32_t* ids, const float* weights,
                               float* x) const {
  const MoeDesc& m = arch_.layers.at(static_cast<size_t>(layer)).experts;
  const LayerWeights& W = layers_[static_cast<size_t>(layer)];
  const int64_t H = arch_.hidden, I = m.expert_intermediate, k = m.top_k, E = m.n_experts, slots = rows * k;
  // Slots sorted by expert (ascending expert, then slot): row r of the
  // sorted matrix reads token token_of_row[r]; slot s sits at row_of_slot[s].
  std::vector<int32_t> host_ids(static_cast<size_t>(slots));
  kernels_->download(host_ids.data(), ids, host_ids.size() * sizeof(int32_t));
  std::vector<int64_t> begin(static_cast<size_t>(E + 1), 0);
  for (int32_t e : host_ids) {
    if (e < 0 || e >= E) fail(XQ_ERR_INTERNAL, "layer {}: MoE routing chose expert {} of {}", layer, e, E);
    ++begin[static_cast<size_t>(e) + 1];
  }
  for (int64_t e = 0; e < E; ++e) begin[e + 1] += begin[e];
  std::vector<int32_t> meta(static_cast<size_t>(2 * slots));  // token_of_row | row_of_slot
  std::vector<int64_t> fill(begin.begin(), begin.end() - 1);
  for (int64_t s = 0; s < slots; ++s) {
    const int64_t r = fill[static_cast<size_t>(host_ids[s])]++;
    meta[static_cast<size_t>(r)] = static_cast<int32_t>(s / k);
    meta[static_cast<size_t>(slots + s)] = static_cast<int32_t>(r);
  }
  const bool stacked = !W.expert_gate_up.empty();
  Carve c(static_cast<char*>(scratch(kMoeExperts, aligned(2 * slots * 4) + 2 * aligned(slots * H * 4) +
                                                      aligned(2 * slots * I * 4) + (stacked ? aligned(slots * I * 4) : 0))));
  auto* d_meta = c.take<int32_t>(2 * slots);
  float* xs = c.take<float>(slots * H);
  // gu: [slots, 2I] from the stacked experts (gate's and up's halves side by
  // side in each row), or gate's [slots, I] then up's.
  float* gu = c.take<float>(2 * slots * I);
  float* ys = c.take<float>(slots * H);
  float* act = stacked ? c.take<float>(slots * I) : gu;  // down_proj's input
  kernels_->upload(d_meta, meta.data(), meta.size() * sizeof(int32_t));

  xq_op gather = Kernels::op(XQ_OP_GET_ROWS);
  gather.src[0] = f32({rows, H}, h);
  gather.src[1] = dtensor(XQ_DTYPE_I32, {slots}, d_meta);
  gather.dst = f32({slots, H}, xs);
  kernels_->run(gather, "GET_ROWS (rows sorted by expert)");
  auto lin = [&](int i) -> const LinearWeights& { return W.linears[static_cast<size_t>(i)]; };
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = begin[e], n = begin[e + 1] - r0;
    if (n == 0) continue;
    if (stacked) {
      linear(W.expert_gate_up[static_cast<size_t>(e)], xs + r0 * H, n, gu + r0 * 2 * I, "expert gate|up_proj");
    } else {
      linear(lin(m.gate[e]), xs + r0 * H, n, gu + r0 * I, "expert gate_proj");
      linear(lin(m.up[e]), xs + r0 * H, n, gu + (slots + r0) * I, "expert up_proj");
    }
  }
  xq_op sw = Kernels::op(XQ_OP_SWIGLU);
  sw.src[0] = stacked ? column_slice(XQ_DTYPE_F32, slots, I, 2 * I, gu) : f32({slots, I}, gu);
  sw.src[1] = stacked ? column_slice(XQ_DTYPE_F32, slots, I, 2 * I, gu + I) : f32({slots, I}, gu + slots * I);
  sw.dst = f32({slots, I}, act);
  kernels_->run(sw, "SWIGLU (experts)");
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = begin[e], n = begin[e + 1] - r0;
    if (n > 0) linear(lin(m.down[e]), act + r0 * I, n, ys + r0 * H, "expert down_proj");
  }
  xq_op comb = Kernels::op(XQ_OP_MOE_COMBINE);
  comb.dst = f32({rows, H}, x);
  comb.src[0] = f32({slots, H}, ys);
  comb.src[1] = f32({rows, k}, weights);
  comb.src[2] = dtensor(XQ_DTYPE_I32, {slots}, d_meta + slots);
  kernels_->run(comb, "MOE_COMBINE (experts)");
}

void Model::moe_shared_expert_device(int layer, const float* h, int64_t rows, float* x) const {
  const MoeDesc& m = arch_.layers.at(static_cast<size_t>(layer)).experts;
  const LayerWeights& W = layers_[static_cast<size_t>(layer)];
  const int64_t H = arch_.hidden, S = m.shared_intermediate;
  auto lin = [&](int i) -> const LinearWeights& { return W.linears[static_cast<size_t>(i)]; };
  Carve c(static_cast<char*>(
      scratch(kMoeShared, 2 * aligned(rows * S * 4) + aligned(rows * H * 4) + aligned(rows * 4))));
  float* g = c.take<float>(rows * S);
  float* u = c.take<float>(rows * S);
  float* y = c.take<float>(rows * H);
  float* gate = c.take<float>(rows);
  linear(lin(m.shared_gate), h, rows, g, "shared_expert.gate_proj");
  linear(lin(m.shared_up), h, rows, u, "shared_expert.up_proj");
  xq_op sw = Kernels::op(XQ_OP_SWIGLU);
  sw.src[0] = f32({rows, S}, g);
  sw.src[1] = f32({rows, S}, u);
  sw.dst = sw.src[0];
  kernels_->run(sw, "SWIGLU (shared expert)");
  linear(lin(m.shared_down), g, rows, y, "shared_expert.down_proj");
  linear(lin(m.shared_expert_gate), h, rows, gate, "shared_expert_gate");
  xq_op comb = Kernels::op(XQ_OP_MOE_COMBINE);
  comb.dst = f32({rows, H}, x);
  comb.src[0] = f32({rows, H}, y);
  comb.src[1] = f32({rows, 1}, gate);
  comb.i[0] = 1;  // sigmoid(shared_expert_gate(h))
  kernels_->run(comb, "MOE_COMBINE (shared expert)");
}

}  // namespace xquant
