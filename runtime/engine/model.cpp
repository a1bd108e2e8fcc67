// model.cpp: loading a Llama-family checkpoint into the engine and running
// its forward pass through a kernel provider (see model.hpp).
#include "engine/model.hpp"
#include "engine/decode_graphs.hpp"
#include "engine/device_weights.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/fuse.hpp"
#include "engine/load_phases.hpp"
#include "engine/stored_layouts.hpp"
#include "engine/release_source.hpp"
#include "engine/paged_kv.hpp"
#include "engine/rope_kv.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <xquant/sdk/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace xquant {

namespace fs = std::filesystem;

void KvCache::init(const Architecture& arch, int64_t capacity) {
  if (capacity <= 0) fail(XQ_ERR_INVALID_ARGUMENT, "KV cache capacity must be positive (got {})", capacity);
  capacity_ = capacity;
  per_layer_ = capacity * arch.n_kv_heads * arch.head_dim;
}

KvCache::KvCache(const Architecture& arch, int64_t capacity) {
  init(arch, capacity);
  host_.assign(static_cast<size_t>(2 * arch.n_layers * per_layer_), 0.0f);
  base_ = host_.data();
}

KvCache::KvCache(const Model& model, int64_t capacity) {
  init(model.arch(), capacity);
  const uint64_t floats = static_cast<uint64_t>(2 * model.arch().n_layers * per_layer_);
  if (model.kernels().host_memory()) {
    host_.assign(floats, 0.0f);
    base_ = host_.data();
  } else {
    owner_ = &model.kernels();
    device_ = DeviceBuffer(model.kernels(), floats * sizeof(float), "the KV cache");
    base_ = device_.f32();
  }
}

std::unique_ptr<Model> Model::open(Runtime& runtime, const fs::path& path, const ModelOptions& options) {
  auto cp = Checkpoint::open(runtime, path);
  load_phase("checkpoint open");
  std::unique_ptr<Model> m(new Model(runtime, std::move(cp), options));
  load_phase("kernel provider");
  if (options.tokenizer_first) {
    m->tokenizer();
    m->checkpoint_->drop_vocabulary();  // built: the config's copy of it is read no more
    release_free_heap();  // the parse's freed nodes, before the weights fill the heap
    load_phase("tokenizer");
  }
  m->load_weights();
  load_phase("load end");
  return m;
}

Model::Model(Runtime& runtime, std::unique_ptr<Checkpoint> cp, const ModelOptions& options)
    : runtime_(runtime), options_(options), checkpoint_(std::move(cp)) {
  if (const char* e = std::getenv("XQUANT_DEVICE_WEIGHTS"); e && *e)
    options_.device_weights = device_weights_from_name(e, "XQUANT_DEVICE_WEIGHTS");
  if (options_.device_weights == XQ_DTYPE_INVALID) options_.device_weights = stored_float_weights(*checkpoint_);
  if (const char* e = std::getenv("XQUANT_TABLES"); e && *e) options_.tables = table_form_from_name(e);
  if (options_.tables == TableForm::kAuto) options_.tables = default_table_form(*checkpoint_);
  arch_ = Architecture::from_config(checkpoint_->config());
  kernels_ = std::make_unique<Kernels>(runtime_.plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, options_.provider));
}

Model::~Model() {
  graphs_.reset();  // recordings go before the weights they read
  if (!kernels_) return;
  for (auto& l : layers_) {
    for (auto& lw : l.linears) kernels_->release(lw.q);
    for (auto& lw : l.expert_gate_up) kernels_->release(lw.q);
    kernels_->release(l.qkv.q);
    kernels_->release(l.gate_up.q);
  }
  if (lm_head_.q != embed_q_) kernels_->release(lm_head_.q);
  kernels_->release(embed_q_);
}

std::vector<float> Model::read_vector(const std::string& name, int64_t expect) const {
  const TensorEntry& t = checkpoint_->require(name);
  if (t.numel() != expect)
    fail(XQ_ERR_MALFORMED, "tensor '{}' in '{}' has shape {} ({} elements), expected {}", name,
         checkpoint_->path().string(), t.shape_text(), t.numel(), expect);
  return checkpoint_->read_f32(t);
}

LinearWeights Model::load_linear(const LinearDesc& d) {
  LinearWeights lw;
  lw.desc = &d;
  const TensorEntry* te = checkpoint_->find(d.weight_name());
  if (te && (load_foreign_linear(lw, {&d}) ||
             (te->has_quantized && !options_.dequantize_all && adopt_stored(*te, d, lw)))) {
    if (d.bias) lw.bias = read_vector(d.bias_name(), d.out);
    return lw;
  }
  std::optional<QuantTensor> qt = checkpoint_->read_module(d.module);
  if (!qt && te && te->has_quantized && !options_.dequantize_all) qt = checkpoint_->read_quantized(*te);
  if (qt) {
    const auto& q = qt->get();
    if (q.rows != d.out || q.cols != d.in)
      fail(XQ_ERR_MALFORMED, "quantized '{}' is [{}, {}], expected [{}, {}]", d.module, q.rows, q.cols, d.out, d.in);
    if (!options_.dequantize_all) lw.q = kernels_->prepare(q, d.module);
    if (lw.q && !choose_qmatmul_act(lw)) {
      logger().debug("{}: provider '{}' prepared the weight but runs no QMATMUL on it here", d.module, kernels_->name());
      kernels_->release(lw.q);
      lw.q = nullptr;
    }
    if (lw.q) {
      lw.layout = kernels_->layout(lw.q);
      lw.bytes = quantized_bytes(q);
      ++n_quantized_;
      load_stats_.repacked_bytes += lw.bytes;
      ++load_stats_.repacked_linears;
    } else {
      lw.w.resize(static_cast<size_t>(d.out * d.in));
      for (int64_t r = 0; r < d.out; ++r) qt->dequantize_row(r, lw.w.data() + r * d.in);
      lw.layout = "f32 (dequantized on load)";
      ++n_dequantized_;
      logger().debug("{}: {}-bit weight dequantized to F32 on load", d.module, q.bits);
    }
  } else {
    if (!te) fail(XQ_ERR_NOT_FOUND, "tensor '{}' not found in '{}'", d.weight_name(), checkpoint_->path().string());
    if (te->shape.size() != 2 || te->shape[0] != d.out || te->shape[1] != d.in)
      fail(XQ_ERR_MALFORMED, "tensor '{}' has shape {}, expected [{}, {}]", te->name, te->shape_text(), d.out, d.in);
    lw.w = checkpoint_->read_f32(*te);
    lw.layout = "f32";
  }
  if (!lw.w.empty()) lw.bytes = lw.w.size() * sizeof(float);
  if (d.bias) lw.bias = read_vector(d.bias_name(), d.out);
  release_module_source(d.module);  // packed or copied to F32 above: the mapped pages are not read again
  return lw;
}

std::unique_ptr<LinearDesc> Model::stacked_desc(const LayerDesc& d, const std::vector<int>& members,
                                                const char* name, std::vector<const LinearDesc*>& parts) {
  for (int i : members) parts.push_back(&d.linears[static_cast<size_t>(i)]);
  auto desc = std::make_unique<LinearDesc>(*parts[0]);
  desc->module = parts[0]->module + " (" + name + ")";
  desc->out = 0;
  for (const auto* p : parts) {
    desc->out += p->out;
    if (p->in != parts[0]->in || p->bias != parts[0]->bias) return nullptr;
  }
  return desc;
}

LinearWeights Model::load_stacked(const LayerDesc& d, const std::vector<int>& members, LayerWeights& w,
                                  const char* name) {
  std::vector<const LinearDesc*> parts;
  auto desc = stacked_desc(d, members, name, parts);
  if (!desc) return {};
  std::vector<std::optional<QuantTensor>> qs;
  int n_quant = 0;
  for (const auto* p : parts) {
    const TensorEntry* te = checkpoint_->find(p->weight_name());
    std::optional<QuantTensor> qt = checkpoint_->read_module(p->module);
    if (!qt && te && te->has_quantized) qt = checkpoint_->read_quantized(*te);
    if (!qt && !te) return {};  // load_linear reports the missing tensor
    if (qt && (qt->get().rows != p->out || qt->get().cols != p->in)) return {};
    n_quant += qt ? 1 : 0;
    qs.push_back(std::move(qt));
  }
  if (n_quant != 0 && n_quant != static_cast<int>(parts.size())) return {};
  LinearWeights lw;
  lw.desc = desc.get();
  if (n_quant) {
    std::vector<const xq_quant_tensor*> qp;
    for (auto& q : qs) qp.push_back(&q->get());
    std::string why;
    std::optional<QuantTensor> st = stack_rows(qp, &why);
    if (!st) {
      logger().debug("{}: {} not stacked: {}", parts[0]->module, name, why);
      return {};
    }
    const xq_quant_tensor& q = st->get();
    lw.q = kernels_->prepare(q, desc->module);
    if (!lw.q) return {};
    if (!choose_qmatmul_act(lw)) {
      kernels_->release(lw.q);
      return {};
    }
    lw.layout = kernels_->layout(lw.q);
    lw.bytes = quantized_bytes(q);
    n_quantized_ += static_cast<int>(parts.size());
    load_stats_.repacked_bytes += lw.bytes;
    load_stats_.repacked_linears += static_cast<int>(parts.size());
    for (const auto* p : parts) release_module_source(p->module);
  } else {
    for (const auto* p : parts) {
      const TensorEntry& te = checkpoint_->require(p->weight_name());
      if (te.shape.size() != 2 || te.shape[0] != p->out || te.shape[1] != p->in) return {};
      std::vector<float> part = checkpoint_->read_f32(te);
      lw.w.insert(lw.w.end(), part.begin(), part.end());
    }
    // Copied to F32: the mapped pages are not read again (as load_linear).
    for (const auto* p : parts) release_module_source(p->module);
    lw.layout = "f32";
    lw.bytes = lw.w.size() * sizeof(float);
  }
  keep_stacked(std::move(desc), parts, lw, w);
  return lw;
}

void Model::discard_stacked(LinearWeights& s, int members) {
  if (s.q) {
    kernels_->release(s.q);
    n_quantized_ -= members;
    load_stats_.repacked_bytes -= s.bytes;
    load_stats_.repacked_linears -= members;
  }
  s = LinearWeights{};
}

void Model::keep_stacked(std::unique_ptr<LinearDesc> desc, const std::vector<const LinearDesc*>& parts,
                         LinearWeights& lw, LayerWeights& w) {
  if (desc->bias)
    for (const auto* p : parts) {
      std::vector<float> b = read_vector(p->bias_name(), p->out);
      lw.bias.insert(lw.bias.end(), b.begin(), b.end());
    }
  w.fused_desc.push_back(std::move(desc));
}

bool Model::choose_qmatmul_act(LinearWeights& lw) const {
  // supports_op checks shapes and dtypes only; it never reads the data.
  float* const probe = support_probe();
  const int64_t out = lw.desc->out ? lw.desc->out : arch_.vocab, in = lw.desc->in ? lw.desc->in : arch_.hidden;
  for (xq_dtype t : {XQ_DTYPE_F32, XQ_DTYPE_BF16}) {
    xq_op op = Kernels::op(XQ_OP_QMATMUL);
    op.qweight = lw.q;
    op.src[0] = dtensor(t, {1, in}, probe);
    op.dst = dtensor(t, {1, out}, probe);
    if (lw.desc->bias) op.src[2] = f32({out}, probe);
    if (kernels_->supports(op)) {
      lw.act = t;
      return true;
    }
  }
  return false;
}

// Device providers: a layer's float weights go up as soon as it is loaded
// (load_weights) and their host copies are dropped, so a load holds one
// layer's F32 on the host rather than the whole model's (a BF16 Qwen3-32B
// would need 131 GB of host memory before its first upload); the norms stay
// on the host too (they are small and weight_bytes_per_token counts them).
void Model::upload_linear(LinearWeights& lw) {
  const Kernels& k = *kernels_;
  if (!lw.w.empty() && options_.device_weights == XQ_DTYPE_BF16 && bf16_matmul_runs(lw)) {
    std::vector<uint16_t> h(lw.w.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = sdk::f32_to_bf16(lw.w[i]);
    lw.dw = upload_copy(k, h.data(), h.size(), "a BF16 Linear weight");
    lw.act = XQ_DTYPE_BF16;
    lw.bytes = h.size() * 2;
    lw.layout = "bf16";
  } else if (!lw.w.empty()) {
    lw.dw = upload_copy(k, lw.w.data(), lw.w.size(), "a Linear weight");
  }
  lw.w.clear();
  lw.w.shrink_to_fit();
  if (!lw.bias.empty() && !lw.dbias) lw.dbias = upload_copy(k, lw.bias.data(), lw.bias.size(), "a Linear bias");
}

void Model::upload_layer(LayerWeights& l) {
  const Kernels& k = *kernels_;
  auto up = [&](const std::vector<float>& v) { return upload_copy(k, v.data(), v.size(), "a norm weight"); };
  l.d_input_norm = up(l.input_norm);
  l.d_post_norm = up(l.post_norm);
  if (!l.q_norm.empty()) l.d_q_norm = up(l.q_norm);
  if (!l.k_norm.empty()) l.d_k_norm = up(l.k_norm);
  for (auto& lw : l.linears) upload_linear(lw);
  if (l.qkv.desc) upload_linear(l.qkv);
  if (l.gate_up.desc) upload_linear(l.gate_up);
  for (auto& lw : l.expert_gate_up) upload_linear(lw);
}

// The rest once every layer is up: the embeddings (unless uploaded as stored,
// device_tables.cpp), the final norm, RoPE factors and lm_head.
void Model::upload_weights() {
  const Kernels& k = *kernels_;
  auto up = [&](const std::vector<float>& v, const char* what) { return upload_copy(k, v.data(), v.size(), what); };
  if (!d_embed_ && !d_embed16_) d_embed_ = up(embed_, "the embeddings");
  embed_.clear();
  embed_.shrink_to_fit();
  d_final_norm_ = up(final_norm_, "the final norm");
  if (!rope_factors_.empty()) d_rope_factors_ = up(rope_factors_, "the RoPE frequency factors");
  upload_linear(lm_head_);
}

bool Model::bf16_matmul_runs(const LinearWeights& lw) const {
  float* const probe = support_probe();
  const int64_t out = lw.desc->out ? lw.desc->out : arch_.vocab, in = lw.desc->in ? lw.desc->in : arch_.hidden;
  xq_op op = Kernels::op(XQ_OP_MATMUL);
  op.src[0] = dtensor(XQ_DTYPE_BF16, {1, in}, probe);
  op.src[1] = dtensor(XQ_DTYPE_BF16, {out, in}, probe);
  if (lw.desc->bias) op.src[2] = f32({out}, probe);
  op.dst = dtensor(XQ_DTYPE_BF16, {1, out}, probe);
  return kernels_->supports(op);
}

void* Model::scratch(Slot s, uint64_t bytes) const {
  DeviceBuffer& b = scratch_[s];
  if (b.bytes() < bytes) {
    const uint64_t grown = std::max<uint64_t>(bytes, b.bytes() + b.bytes() / 2);
    b.reset();  // the provider's free waits for work still reading it
    b = DeviceBuffer(*kernels_, grown, "engine activations");
    ++scratch_moves_;
  }
  return b.data();
}

float* Model::temp(Slot s, int64_t n, std::vector<float>& host) const {
  if (!on_device()) {
    host.resize(static_cast<size_t>(n));
    return host.data();
  }
  return static_cast<float*>(scratch(s, static_cast<uint64_t>(n) * sizeof(float)));
}

void Model::copy_floats(float* dst, const float* src, int64_t n, const char* what) const {
  if (n <= 0) return;
  if (!on_device()) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  xq_op op = Kernels::op(XQ_OP_CONVERT);
  op.src[0] = f32({n}, src);
  op.dst = f32({n}, dst);
  kernels_->run(op, what);
}

namespace {

// q, k, v and gate, up run inside w.qkv and w.gate_up: their entries say so.
void mark_stacked(const LayerDesc& d, LayerWeights& w, std::vector<bool>& loaded) {
  for (int i : {LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV, LayerDesc::kGate, LayerDesc::kUp}) {
    w.linears[static_cast<size_t>(i)].desc = &d.linears[static_cast<size_t>(i)];
    w.linears[static_cast<size_t>(i)].layout = i <= LayerDesc::kV ? "stacked into q|k|v" : "stacked into gate|up";
    loaded[static_cast<size_t>(i)] = true;
  }
}

}  // namespace

void Model::load_layer_weights(int l) {
  const auto& a = arch_;
  const LayerDesc& d = a.layers[static_cast<size_t>(l)];
  LayerWeights& w = layers_[static_cast<size_t>(l)];
  w.input_norm = read_vector(d.input_norm, a.hidden);
  w.post_norm = read_vector(d.post_norm, a.hidden);
  if (a.qk_norm) {
    w.q_norm = read_vector(d.q_norm, a.head_dim);
    w.k_norm = read_vector(d.k_norm, a.head_dim);
  }
  w.linears.resize(d.linears.size());
  std::vector<bool> loaded(d.linears.size(), false);
  // Device providers run q|k|v and gate|up as one GEMM each when they stack.
  // Weights stored in the provider's layout are adopted as they are rather
  // than stacked from canonical tensors, which would repack them: q|k|v and
  // gate|up each one weight whose parts' stored bytes are placed. Where
  // placement refuses (a part's rows end inside the layout's row block:
  // SmolLM2-135M's 576-row q, stories260K's 64-row q), they are stacked from
  // the canonical tensors instead, repacked at load: one by one, a layer runs
  // five GEMMs for two and decoded 1.35x (Llama-3.1-8B shapes) to 1.97x
  // (SmolLM2-135M shapes) slower at batch 1 (H100, session thirty-seven,
  // docs/results.md). XQUANT_STACK_STORED=0 adopts every stored Linear one
  // by one, nothing repacked.
  const bool stackable = on_device() && !options_.dequantize_all && !d.moe;
  const bool stored = stackable && stored_in_provider_layout(*checkpoint_, *kernels_, d,
                                                             {LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV, LayerDesc::kGate, LayerDesc::kUp});
  const bool stack = stackable && (!stored || stack_stored_weights());
  bool stacked = false;
  if (stored && stack && kernels_->adopts_stacked()) {
    StoredCounts cq, cg;
    std::string refused;
    w.qkv = adopt_stored_stacked(d, {LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV}, w, "q|k|v", cq, &refused);
    if (w.qkv.desc) w.gate_up = adopt_stored_stacked(d, {LayerDesc::kGate, LayerDesc::kUp}, w, "gate|up", cg, &refused);
    stacked = w.qkv.desc && w.gate_up.desc;
    if (stacked) {
      count_stored(cq);
      count_stored(cg);
      mark_stacked(d, w, loaded);
    } else {  // both or neither: stacked from canonical tensors below
      if (w.qkv.q) kernels_->release(w.qkv.q);
      w.qkv = LinearWeights{};
      w.gate_up = LinearWeights{};
      // Once a model at info (its layers share their shapes), every layer at debug.
      logger().log(l == 0 ? spdlog::level::info : spdlog::level::debug,
                   "layer {}: stored q|k|v and gate|up not placed as one weight each ({}): stacked from the canonical "
                   "tensors, repacked at load",
                   l, refused.empty() ? "the stored parts differ" : refused);
    }
  }
  if (stack && !stacked) {
    w.qkv = load_stacked(d, {LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV}, w, "q|k|v");
    w.gate_up = load_stacked(d, {LayerDesc::kGate, LayerDesc::kUp}, w, "gate|up");
    if (!w.qkv.desc || !w.gate_up.desc) {  // both or neither: run_layer_stacked needs both
      // The members load one by one below and count themselves there.
      discard_stacked(w.qkv, 3);
      discard_stacked(w.gate_up, 2);
    } else {
      mark_stacked(d, w, loaded);
    }
  }
  if (d.moe && on_device() && !options_.dequantize_all && !options_.layers_on_demand)
    stack_expert_gate_up(l, d, w, loaded);
  if (!on_device() && d.linears.size() > static_cast<size_t>(LayerDesc::kDown)) stack_host_layer(d, w, loaded);
  for (size_t i = 0; i < d.linears.size(); ++i)
    if (!loaded[i]) w.linears[i] = load_linear(d.linears[i]);
  // Device providers decide after upload_weights (dense experts' device copies).
  if (d.moe && !on_device() && options_.moe_provider_ops) w.experts_fused = moe_experts_fuse(l);
}

void Model::load_weights() {
  const auto& a = arch_;
  const TensorEntry& et = checkpoint_->require(a.embed);
  if (et.shape.size() != 2 || et.shape[0] != a.vocab || et.shape[1] != a.hidden)
    fail(XQ_ERR_MALFORMED, "'{}' has shape {}, expected [{}, {}]", a.embed, et.shape_text(), a.vocab, a.hidden);
  final_norm_ = read_vector(a.final_norm, a.hidden);
  // RoPE: llama3 factors from the file (GGUF rope_freqs) or from the config.
  if (const TensorEntry* rf = checkpoint_->find("rope_freqs.weight")) {
    rope_factors_ = checkpoint_->read_f32(*rf);
    if (static_cast<int64_t>(rope_factors_.size()) != a.head_dim / 2)
      fail(XQ_ERR_MALFORMED, "rope_freqs.weight has {} entries, expected head_dim/2 = {}", rope_factors_.size(), a.head_dim / 2);
  } else {
    rope_factors_ = a.llama3_freq_factors();
  }
  layers_.resize(static_cast<size_t>(a.n_layers));
  // Calibration: layers (and the embeddings) come in one at a time later
  // (engine/model_on_demand.cpp); lm_head is never read.
  if (options_.layers_on_demand) return begin_on_demand();
  if (!load_foreign_embedding(et) && !compact_embedding(et) && !device_embedding(et)) {
    if (!keep_bf16_embedding(et)) {
      embed_.resize(static_cast<size_t>(a.vocab * a.hidden));
      load_stats_.source_bytes_released +=
          read_and_release(*checkpoint_, et, XQ_DTYPE_F32, embed_.data(), embed_.size() * sizeof(float));
    }
  }
  load_phase("embedding");
  const uint64_t available = weight_memory_available();
  for (int64_t l = 0; l < a.n_layers; ++l) {
    load_layer_weights(static_cast<int>(l));
    if (on_device()) upload_layer(layers_[static_cast<size_t>(l)]);
    if (l == 0) refuse_layers_beyond(available);
    // glibc raises its mmap threshold to the size of each mapped block
    // freed (up to 32 MiB; mallopt(3) M_MMAP_THRESHOLD), so after the first
    // Linear the 8-32 MiB transients (unpacked codes, the stacked gate|up
    // copy) come from the heap, between the packed weights that stay, and
    // their holes stay resident. Qwen2.5-Coder-1.5B W4A16 g128 on cpu: peak
    // RSS 2.04 GB without this trim, 1.36 GB with it (1.34 GB held after the
    // load; docs/engine.md "Memory").
    release_free_heap();
  }
  load_phase("layers (Linears and norms)");
  // lm_head: its own tensor when the file has one (even if config says tied).
  static const LinearDesc lm_desc{"lm_head", "lm_head", 0, 0, false};
  if (checkpoint_->find(a.lm_head) || checkpoint_->read_module("lm_head")) {
    auto* desc = new LinearDesc{"lm_head", "lm_head", a.vocab, a.hidden, false};
    lm_owned_.reset(desc);
    if (!compact_lm_head(*desc) && !device_lm_head(*desc)) lm_head_ = load_linear(*desc);
  } else {
    if (!a.tie_embeddings) logger().warn("'{}' has no lm_head.weight: using the tied embeddings", checkpoint_->path().string());
    lm_head_.desc = &lm_desc;
    lm_head_.layout = embed_bf16_.empty() ? "f32 (tied embeddings)"
                      : embed16_dtype_ == XQ_DTYPE_F16 ? "f16 (tied embeddings)" : "bf16 (tied embeddings)";
    if (embed_q_) tie_lm_head_to_foreign_embedding();
  }
  if (lm_head_.bytes == 0 && lm_head_.w.empty() && !lm_head_.q)
    lm_head_.bytes = embed_.size() * sizeof(float) + embed_bf16_.size() * sizeof(uint16_t) + d_embed_.bytes();
  load_phase("lm_head");
  if (on_device()) upload_weights();
  load_phase("upload of float weights");  // the layers went up as they loaded
  for (int64_t l = 0; on_device() && l < a.n_layers; ++l)
    if (a.layers[static_cast<size_t>(l)].moe) layers_[static_cast<size_t>(l)].experts_fused = moe_experts_fuse(static_cast<int>(l));
  if (const char* e = std::getenv("XQUANT_DECODE_GRAPHS")) options_.decode_graphs = std::string(e) != "0";
  if (on_device() && options_.decode_graphs && kernels_->records_graphs())
    graphs_ = std::make_unique<DecodeGraphs>(*kernels_);
  count_float_weights();
  release_free_heap();  // the load's transient buffers (unpacked codes, stacked copies)
  if (n_dequantized_ > 0)
    logger().info("{} of {} quantized Linears dequantized to F32 on load (kernel provider '{}' does not run their scheme)",
                  n_dequantized_, n_dequantized_ + n_quantized_, kernels_->name());
  logger().debug("model '{}': {} layers, hidden {}, {} Linears run quantized on '{}'", checkpoint_->path().string(),
                 a.n_layers, a.hidden, n_quantized_, kernels_->name());
  if (n_quantized_ > 0)
    logger().info("quantized weights on '{}': {} bytes repacked at load ({} Linears), {} bytes taken as stored ({} Linears{})",
                  kernels_->name(), load_stats_.repacked_bytes, load_stats_.repacked_linears, load_stats_.stored_bytes,
                  load_stats_.stored_linears,
                  load_stats_.stored_copies ? fmt::format("; {} with a second stored copy, {} bytes", load_stats_.stored_copies,
                                                          load_stats_.stored_copy_bytes)
                                            : std::string());
}

const Tokenizer& Model::tokenizer() {
  if (!tokenizer_) {
    if (!options_.tokenizer_from.empty()) {
      auto cp = Checkpoint::open(runtime_, options_.tokenizer_from);
      tokenizer_ = Tokenizer::from_config(cp->config());
    } else {
      try {
        tokenizer_ = Tokenizer::from_config(config());
      } catch (const Error& e) {
        if (e.status() != XQ_ERR_NOT_FOUND) throw;
        fail(XQ_ERR_NOT_FOUND, "{} ('{}'; take the vocabulary from another checkpoint with --tokenizer PATH / "
             "ModelOptions::tokenizer_from)", e.what(), checkpoint_->path().string());
      }
    }
  }
  return *tokenizer_;
}

uint64_t Model::weight_bytes() const { return counted_weight_bytes(false); }
uint64_t Model::weight_bytes_per_token() const { return counted_weight_bytes(true); }

uint64_t Model::counted_weight_bytes(bool top_k_experts_only) const {
  uint64_t b = lm_head_.bytes + final_norm_.size() * 4 + static_cast<uint64_t>(arch_.hidden) * 4;
  for (size_t li = 0; li < layers_.size(); ++li) b += layer_weight_bytes(li, top_k_experts_only);
  return b;
}

uint64_t Model::layer_weight_bytes(size_t li, bool top_k_experts_only) const {
  const LayerWeights& l = layers_[li];
  uint64_t b = (l.input_norm.size() + l.post_norm.size() + l.q_norm.size() + l.k_norm.size()) * 4;
  std::vector<char> routed(l.linears.size(), 0);
  const MoeDesc& m = arch_.layers[li].experts;
  if (arch_.layers[li].moe)
    for (const auto* set : {&m.gate, &m.up, &m.down})
      for (int i : *set) routed[static_cast<size_t>(i)] = 1;
  uint64_t experts = 0;
  for (size_t i = 0; i < l.linears.size(); ++i)
    (routed[i] ? experts : b) += l.linears[i].bytes + l.linears[i].bias.size() * 4;
  for (const LinearWeights& lw : l.expert_gate_up) experts += lw.bytes + lw.bias.size() * 4;
  // A token runs top_k of the n_experts (all experts of a layer have one shape).
  b += top_k_experts_only && m.n_experts > 0 ? experts * static_cast<uint64_t>(m.top_k) / m.n_experts : experts;
  for (const LinearWeights* lw : {&l.qkv, &l.gate_up}) b += lw->bytes + lw->bias.size() * 4;
  return b;
}

void Model::linear(const LinearWeights& lw, const float* x, int64_t rows, float* y, const char* what) const {
  const int64_t out = lw.desc->out ? lw.desc->out : arch_.vocab, in = lw.desc->in ? lw.desc->in : arch_.hidden;
  const float* bias = at(lw.bias, lw.dbias);
  if (lw.act != XQ_DTYPE_F32) {
    // The provider's GEMM takes 16-bit activations: convert in and out.
    void* xb = scratch(kLinearIn, static_cast<uint64_t>(rows * in) * 2);
    void* yb = scratch(kLinearOut, static_cast<uint64_t>(rows * out) * 2);
    xq_op cin = Kernels::op(XQ_OP_CONVERT);
    cin.src[0] = f32({rows * in}, x);
    cin.dst = dtensor(lw.act, {rows * in}, xb);
    kernels_->run(cin, "CONVERT (Linear input)");
    xq_op op = Kernels::op(lw.q ? XQ_OP_QMATMUL : XQ_OP_MATMUL);
    op.src[0] = dtensor(lw.act, {rows, in}, xb);
    if (lw.q) op.qweight = lw.q;
    else op.src[1] = dtensor(lw.act, {out, in}, lw.dw.data());
    if (bias) op.src[2] = f32({out}, bias);
    op.dst = dtensor(lw.act, {rows, out}, yb);
    kernels_->run(op, what);
    xq_op cout = Kernels::op(XQ_OP_CONVERT);
    cout.src[0] = dtensor(lw.act, {rows * out}, yb);
    cout.dst = f32({rows * out}, y);
    kernels_->run(cout, "CONVERT (Linear output)");
    return;
  }
  xq_op op = Kernels::op(lw.q ? XQ_OP_QMATMUL : XQ_OP_MATMUL);
  op.src[0] = f32({rows, in}, x);
  if (lw.q) op.qweight = lw.q;
  else if (lw.dw) op.src[1] = f32({out, in}, lw.dw.f32());
  else if (lw.w_candidate) op.src[1] = f32({out, in}, lw.w_candidate);
  else if (!lw.w.empty()) op.src[1] = f32({out, in}, lw.w.data());
  else if (!lw.w16.empty()) op.src[1] = dtensor(lw.w16_dtype, {out, in}, lw.w16.data());
  else if (&lw == &lm_head_) op.src[1] = embedding_table();  // tied lm_head
  else  // e.g. a member of a stacked weight ("stacked into ..."): it runs inside that weight only
    fail(XQ_ERR_INTERNAL, "{}: '{}' holds no weight of its own (layout '{}')", what,
         lw.desc ? lw.desc->module : std::string("?"), lw.layout);
  if (bias) op.src[2] = f32({out}, bias);
  op.dst = f32({rows, out}, y);
  kernels_->run(op, what);
}

void Model::embed_ids(const int32_t* ids, int64_t n, float* out) const {
  xq_op op = Kernels::op(XQ_OP_GET_ROWS);
  if (embed_q_) op.qweight = embed_q_;
  else op.src[0] = embedding_table();
  op.src[1] = dtensor(XQ_DTYPE_I32, {n}, ids);
  op.dst = f32({n, arch_.hidden}, out);
  kernels_->run(op, "GET_ROWS (embeddings)");
}

void Model::embed(const int32_t* ids, int64_t n, float* out) const {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= arch_.vocab)
      fail(XQ_ERR_INVALID_ARGUMENT, "token #{} = {} is outside the vocabulary [0, {})", i, ids[i], arch_.vocab);
  if (options_.layers_on_demand && embed_.empty())
    fail(XQ_ERR_INVALID_ARGUMENT, "'{}': the embeddings are not loaded (the model loads them on demand: "
         "load_embeddings first)", checkpoint_->path().string());
  if (!on_device()) return embed_ids(ids, n, out);
  void* d = scratch(kIds, static_cast<uint64_t>(n) * sizeof(int32_t));
  kernels_->upload(d, ids, static_cast<uint64_t>(n) * sizeof(int32_t));
  embed_ids(static_cast<const int32_t*>(d), n, out);
}

namespace {

void rms_norm(const Kernels& k, const float* x, int64_t rows, int64_t d, const float* w, double eps, float* y,
              const char* what) {
  xq_op op = Kernels::op(XQ_OP_RMS_NORM);
  op.src[0] = f32({rows, d}, x);
  op.src[1] = f32({d}, w);
  op.dst = f32({rows, d}, y);
  op.f[0] = eps;
  k.run(op, what);
}

void add_inplace(const Kernels& k, float* x, const float* y, int64_t rows, int64_t d) {
  xq_op op = Kernels::op(XQ_OP_ADD);
  op.src[0] = f32({rows, d}, x);
  op.src[1] = f32({rows, d}, y);
  op.dst = op.src[0];
  k.run(op, "ADD (residual)");
}

}  // namespace

std::vector<int32_t> Model::positions(const std::vector<SequenceSpan>& spans, int64_t rows) {
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  int64_t covered = 0;
  for (const auto& s : spans) {
    if (s.row < 0 || s.n < 0 || s.row + s.n > rows) fail(XQ_ERR_INVALID_ARGUMENT, "sequence span outside the batch rows");
    for (int64_t t = 0; t < s.n; ++t) pos[static_cast<size_t>(s.row + t)] = static_cast<int32_t>(s.pos0 + t);
    covered += s.n;
  }
  if (covered != rows) fail(XQ_ERR_INVALID_ARGUMENT, "sequence spans cover {} of {} rows", covered, rows);
  return pos;
}

void Model::layer_forward(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans,
                          const GroupInputTap& tap, LayerPart part) const {
  require_layer(layer);
  if (part != LayerPart::Whole && on_device() && stacked(layer))
    fail(XQ_ERR_UNSUPPORTED, "half a decoder layer runs on host providers only (kernel provider '{}')", kernels_->name());
  if (tap && on_device())
    fail(XQ_ERR_UNSUPPORTED, "layer taps read activations in host memory; kernel provider '{}' keeps them on its device",
         kernels_->name());
  std::vector<int32_t> pos = positions(spans, rows);
  const int32_t* p = pos.data();
  if (on_device()) {
    void* d = scratch(kPos, pos.size() * sizeof(int32_t));
    kernels_->upload(d, pos.data(), pos.size() * sizeof(int32_t));
    p = static_cast<const int32_t*>(d);
  }
  if (!on_device() || !stacked(layer)) return run_layer(layer, x, rows, spans, p, tap, part);
  xq_dtype t = XQ_DTYPE_F32;
  const void* addend = run_layer_stacked(layer, x, rows, spans, p, nullptr, XQ_DTYPE_F32, &t);
  add_residual(x, addend, t, rows);
}

void Model::add_residual(float* x, const void* addend, xq_dtype t, int64_t rows) const {
  xq_op op = Kernels::op(XQ_OP_ADD);
  op.src[0] = f32({rows, arch_.hidden}, x);
  op.src[1] = dtensor(t, {rows, arch_.hidden}, addend);
  op.dst = op.src[0];
  kernels_->run(op, "ADD (residual)");
}

// One decoder layer over `rows` activation rows; `pos` (provider memory)
// holds each row's absolute position. Temporaries are host vectors on host
// providers and one reused provider buffer otherwise.
void Model::run_layer(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans, const int32_t* pos,
                      const GroupInputTap& tap, LayerPart part) const {
  const auto& a = arch_;
  const LayerWeights& W = layers_.at(static_cast<size_t>(layer));
  const int64_t H = a.hidden, NH = a.n_heads, KVH = a.n_kv_heads, HD = a.head_dim, I = a.intermediate;
  const Kernels& k = *kernels_;
  const int64_t n_h = rows * H, n_q = rows * NH * HD, n_kv = rows * KVH * HD, n_i = rows * I;
  std::vector<float> host_tmp;
  float* const base = temp(kLayerTmp, n_h + 2 * n_q + 2 * n_kv + 2 * n_i, host_tmp);
  float* h = base;
  float* q = h + n_h;
  float* kk = q + n_q;
  float* vv = kk + n_kv;
  float* att = vv + n_kv;
  float* g = att + n_q;
  float* u = g + n_i;
  if (part == LayerPart::Mlp) return run_mlp(layer, x, rows, h, g, u, tap, part);

  rms_norm(k, x, rows, H, at(W.input_norm, W.d_input_norm), a.rms_eps, h, "RMS_NORM (input)");
  if (tap) tap(LayerDesc::kAttnIn, h, rows, H);
  if (part == LayerPart::ToAttentionInput) return;
  if (input_transform_) input_transform_(layer, LayerDesc::kAttnIn, h, rows, H);
  if (W.qkv.desc) {
    linear_stacked(W.qkv, h, rows, {{q, NH * HD}, {kk, KVH * HD}, {vv, KVH * HD}}, "q|k|v_proj");
  } else {
    linear(W.linears[LayerDesc::kQ], h, rows, q, "q_proj");
    linear(W.linears[LayerDesc::kK], h, rows, kk, "k_proj");
    linear(W.linears[LayerDesc::kV], h, rows, vv, "v_proj");
  }
  if (a.qk_norm) {
    rms_norm(k, q, rows * NH, HD, at(W.q_norm, W.d_q_norm), a.rms_eps, q, "RMS_NORM (q_norm)");
    rms_norm(k, kk, rows * KVH, HD, at(W.k_norm, W.d_k_norm), a.rms_eps, kk, "RMS_NORM (k_norm)");
  }
  // RoPE at each row's absolute position in its sequence.
  for (int which = 0; which < 2; ++which) {
    xq_op op = Kernels::op(XQ_OP_ROPE);
    op.dst = f32({rows, which ? KVH : NH, HD}, which ? kk : q);
    op.src[0] = op.dst;
    op.src[1] = dtensor(XQ_DTYPE_I32, {rows}, pos);
    if (!rope_factors_.empty()) op.src[2] = f32({HD / 2}, at(rope_factors_, d_rope_factors_));
    op.i[0] = static_cast<int64_t>(a.pairing);
    op.i[1] = HD;
    op.f[0] = a.rope_theta;
    op.f[1] = a.rope_position_scale();
    k.run(op, "ROPE");
  }
  const int64_t kv_row = KVH * HD;
  if (paged_) attend_paged(layer, q, kk, f32({rows, kv_row}, vv), rows, XQ_DTYPE_F32, att);
  for (const auto& s : spans) {
    if (s.n == 0 || paged_) continue;
    copy_floats(s.k + s.pos0 * kv_row, kk + s.row * kv_row, s.n * kv_row, "KV cache append (K)");
    copy_floats(s.v + s.pos0 * kv_row, vv + s.row * kv_row, s.n * kv_row, "KV cache append (V)");
    xq_op op = Kernels::op(XQ_OP_ATTENTION);
    op.src[0] = f32({s.n, NH, HD}, q + s.row * NH * HD);
    op.src[1] = f32({s.pos0 + s.n, KVH, HD}, s.k);
    op.src[2] = f32({s.pos0 + s.n, KVH, HD}, s.v);
    op.dst = f32({s.n, NH, HD}, att + s.row * NH * HD);
    op.f[0] = 1.0 / std::sqrt(static_cast<double>(HD));
    op.i[0] = s.pos0;
    k.run(op, "ATTENTION");
  }
  if (tap) tap(LayerDesc::kAttnOut, att, rows, NH * HD);
  if (input_transform_) input_transform_(layer, LayerDesc::kAttnOut, att, rows, NH * HD);
  linear(W.linears[LayerDesc::kO], att, rows, h, "o_proj");
  add_inplace(k, x, h, rows, H);
  if (part == LayerPart::Attention) return;
  run_mlp(layer, x, rows, h, g, u, tap, part);
}

void Model::post_attention_norm(int layer, const float* x, int64_t rows, float* h) const {
  const LayerWeights& W = layers_.at(static_cast<size_t>(layer));
  rms_norm(*kernels_, x, rows, arch_.hidden, at(W.post_norm, W.d_post_norm), arch_.rms_eps, h,
           "RMS_NORM (post-attention)");
}

void Model::mlp_input(int layer, const float* x, int64_t rows, float* h) const {
  require_layer(layer);
  if (on_device()) fail(XQ_ERR_UNSUPPORTED, "mlp_input reads host memory; kernel provider '{}' keeps it on its device",
                        kernels_->name());
  post_attention_norm(layer, x, rows, h);
  if (input_transform_) input_transform_(layer, LayerDesc::kMlpIn, h, rows, arch_.hidden);
}

void Model::run_mlp(int layer, float* x, int64_t rows, float* h, float* g, float* u, const GroupInputTap& tap,
                    LayerPart part) const {
  const auto& a = arch_;
  const LayerWeights& W = layers_.at(static_cast<size_t>(layer));
  const int64_t H = a.hidden, I = a.intermediate, n_h = rows * H;
  const Kernels& k = *kernels_;
  post_attention_norm(layer, x, rows, h);
  if (tap) tap(LayerDesc::kMlpIn, h, rows, H);
  if (part == LayerPart::ToMlpInput) return;
  if (input_transform_) input_transform_(layer, LayerDesc::kMlpIn, h, rows, H);
  if (a.layers[static_cast<size_t>(layer)].moe) {
    if (part == LayerPart::ToDownInputs) return moe_forward(layer, h, rows, nullptr, tap, true);
    if (on_device() || (options_.moe_provider_ops && !tap)) return moe_forward_device(layer, h, rows, x);
    std::vector<float> moe_out(static_cast<size_t>(n_h));  // the host path (device blocks returned above)
    moe_forward(layer, h, rows, moe_out.data(), tap);
    add_inplace(k, x, moe_out.data(), rows, H);
    return;
  }
  if (W.gate_up.desc) {
    linear_stacked(W.gate_up, h, rows, {{g, I}, {u, I}}, "gate|up_proj");
  } else {
    linear(W.linears[LayerDesc::kGate], h, rows, g, "gate_proj");
    linear(W.linears[LayerDesc::kUp], h, rows, u, "up_proj");
  }
  {
    xq_op op = Kernels::op(XQ_OP_SWIGLU);
    op.src[0] = f32({rows, I}, g);
    op.src[1] = f32({rows, I}, u);
    op.dst = op.src[0];
    k.run(op, "SWIGLU");
  }
  if (tap) tap(LayerDesc::kMlpOut, g, rows, I);
  if (part == LayerPart::ToDownInputs) return;
  if (input_transform_) input_transform_(layer, LayerDesc::kMlpOut, g, rows, I);
  linear(W.linears[LayerDesc::kDown], g, rows, h, "down_proj");
  add_inplace(k, x, h, rows, H);
}

namespace {

uint64_t element_bytes(xq_dtype t) { return t == XQ_DTYPE_F32 ? 4 : 2; }

}  // namespace

// The device decode path. Per layer at batch 1: [ADD_]RMS_NORM writes the
// q|k|v GEMM's input dtype directly; one GEMM for q|k|v; one ROPE_KV takes
// q to F32, rotated, and k, v into the KV cache (contiguous or paged; with
// the q/k norms), or, where the provider refuses it, row-strided CONVERTs,
// ROPEs and KV_WRITEs; [PAGED_]ATTENTION writes o_proj's input dtype; o_proj;
// ADD_RMS_NORM; one gate|up GEMM; SWIGLU over its two column halves writes
// down_proj's input dtype; down_proj, whose output is the next layer's
// pending residual addend. The residual stream x, q, the KV cache and
// attention stay F32; GEMM inputs and outputs are in the dtype each Linear
// takes (BF16 for BF16 and W4A16 weights), the same roundings as the
// converting path of run_layer, minus its conversion ops.
const void* Model::run_layer_stacked(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans,
                                     const int32_t* pos, const void* pending, xq_dtype pending_dtype,
                                     xq_dtype* out_dtype) const {
  const auto& a = arch_;
  const LayerWeights& W = layers_.at(static_cast<size_t>(layer));
  const LinearWeights &QKV = W.qkv, &O = W.linears[LayerDesc::kO], &GU = W.gate_up, &D = W.linears[LayerDesc::kDown];
  const int64_t H = a.hidden, NH = a.n_heads, KVH = a.n_kv_heads, HD = a.head_dim, I = a.intermediate;
  const int64_t n_qkv = (NH + 2 * KVH) * HD;
  const Kernels& k = *kernels_;
  // Scratch: h (norm out), qkv, q (F32), att, o, gu, act; down's output in kPending.
  const uint64_t b_h = rows * H * std::max(element_bytes(QKV.act), element_bytes(GU.act));
  const uint64_t b_qkv = rows * n_qkv * element_bytes(QKV.act), b_q = rows * NH * HD * 4;
  const uint64_t b_att = rows * NH * HD * element_bytes(O.act), b_o = rows * H * element_bytes(O.act);
  const uint64_t b_gu = rows * 2 * I * element_bytes(GU.act), b_act = rows * I * element_bytes(D.act);
  auto align = [](uint64_t n) { return (n + 255) / 256 * 256; };
  char* base = static_cast<char*>(scratch(kLayerTmp, align(b_h) + align(b_qkv) + align(b_q) + align(b_att) +
                                                         align(b_o) + align(b_gu) + align(b_act)));
  char* h = base;
  char* qkv = h + align(b_h);
  float* q = reinterpret_cast<float*>(qkv + align(b_qkv));
  char* att = reinterpret_cast<char*>(q) + align(b_q);
  char* o = att + align(b_att);
  char* gu = o + align(b_o);
  char* act = gu + align(b_gu);

  auto norm_into = [&](const void* addend, xq_dtype addend_t, const float* w, xq_dtype out_t, const char* what) {
    xq_op op = Kernels::op(addend ? XQ_OP_ADD_RMS_NORM : XQ_OP_RMS_NORM);
    op.src[0] = f32({rows, H}, x);
    op.src[1] = f32({H}, w);
    if (addend) op.src[2] = dtensor(addend_t, {rows, H}, addend);
    op.dst = dtensor(out_t, {rows, H}, h);
    op.f[0] = a.rms_eps;
    k.run(op, what);
  };
  auto gemm = [&](const LinearWeights& lw, const void* in, void* out, const char* what) {
    const int64_t n_out = lw.desc->out, n_in = lw.desc->in;
    xq_op op = Kernels::op(lw.q ? XQ_OP_QMATMUL : XQ_OP_MATMUL);
    op.src[0] = dtensor(lw.act, {rows, n_in}, in);
    if (lw.q) op.qweight = lw.q;
    else op.src[1] = dtensor(lw.act, {n_out, n_in}, lw.dw.data());
    if (lw.dbias) op.src[2] = f32({n_out}, lw.dbias.f32());
    op.dst = dtensor(lw.act, {rows, n_out}, out);
    k.run(op, what);
  };
  auto convert = [&](const xq_device_tensor& src, xq_dtype dt, void* dst, const char* what) {
    xq_op op = Kernels::op(XQ_OP_CONVERT);
    op.src[0] = src;
    op.dst = dtensor(dt, {src.shape[0], src.shape[1]}, dst);
    k.run(op, what);
  };
  auto rope = [&](float* data, int64_t n, int64_t heads, const int32_t* p) {
    xq_op op = Kernels::op(XQ_OP_ROPE);
    op.dst = f32({n, heads, HD}, data);
    op.src[0] = op.dst;
    op.src[1] = dtensor(XQ_DTYPE_I32, {n}, p);
    if (d_rope_factors_) op.src[2] = f32({HD / 2}, d_rope_factors_.f32());
    op.i[0] = static_cast<int64_t>(a.pairing);
    op.i[1] = HD;
    op.f[0] = a.rope_theta;
    op.f[1] = a.rope_position_scale();
    k.run(op, "ROPE");
  };

  norm_into(pending, pending_dtype, W.d_input_norm.f32(), QKV.act, pending ? "ADD_RMS_NORM (input)" : "RMS_NORM (input)");
  gemm(QKV, h, qkv, "q|k|v_proj");
  const uint64_t e_qkv = element_bytes(QKV.act);
  const int64_t kv_row = KVH * HD;
  // One ROPE_KV per sequence on the contiguous cache, over all rows on the
  // paged one (engine/rope_kv.hpp), where the provider runs the form asked.
  RopeKvExtras extras;
  extras.factors = d_rope_factors_ ? d_rope_factors_.f32() : nullptr;
  if (a.qk_norm) extras.q_norm = W.d_q_norm.f32(), extras.k_norm = W.d_k_norm.f32(), extras.eps = a.rms_eps;
  if (paged_) extras.cache_rows = paged_->slots;
  auto span_rope_kv = [&](const SequenceSpan& s) {
    const xq_device_tensor kc = f32({s.pos0 + s.n, KVH, HD}, s.k), vc = f32({s.pos0 + s.n, KVH, HD}, s.v);
    return rope_kv_op(a, QKV.act, s.n, qkv + s.row * n_qkv * e_qkv, pos + s.row, q + s.row * NH * HD, kc, vc, extras);
  };
  auto paged_rope_kv = [&] {
    return rope_kv_op(a, QKV.act, rows, qkv, pos, q, paged_->cache->k_pool(layer), paged_->cache->v_pool(layer), extras);
  };
  // The op's src[3] holds the q/k norms or the frequency divisors, not both.
  const bool fused_rope_kv = rope_kv_enabled() && !(a.qk_norm && extras.factors) &&
                             (paged_ ? k.supports(paged_rope_kv())
                                     : !spans.empty() && k.supports(span_rope_kv(spans.front())));
  if (!fused_rope_kv) {
    convert(column_slice(QKV.act, rows, NH * HD, n_qkv, qkv), XQ_DTYPE_F32, q, "CONVERT (q)");
    if (a.qk_norm)
      rms_norm(k, q, rows * NH, HD, W.d_q_norm.f32(), a.rms_eps, q, "RMS_NORM (q_norm)");
    rope(q, rows, NH, pos);
  }
  if (paged_ && fused_rope_kv) {
    k.run(paged_rope_kv(), "ROPE_KV (paged)");
    attend_paged(layer, q, nullptr, {}, rows, O.act, att);
  } else if (paged_) {  // all rows at once: K to F32, normed and rotated; V straight from the GEMM output
    float* kf = static_cast<float*>(scratch(kPagedK, static_cast<uint64_t>(rows * kv_row) * 4));
    const char* k_at = qkv + NH * HD * e_qkv;
    convert(column_slice(QKV.act, rows, kv_row, n_qkv, k_at), XQ_DTYPE_F32, kf, "CONVERT (k)");
    if (a.qk_norm) rms_norm(k, kf, rows * KVH, HD, W.d_k_norm.f32(), a.rms_eps, kf, "RMS_NORM (k_norm)");
    rope(kf, rows, KVH, pos);
    attend_paged(layer, q, kf, column_slice(QKV.act, rows, kv_row, n_qkv, k_at + kv_row * e_qkv), rows, O.act, att);
  }
  for (const auto& s : spans) {
    if (s.n == 0 || paged_) continue;
    if (fused_rope_kv) {
      k.run(span_rope_kv(s), "ROPE_KV");
    } else {
      const char* at = qkv + (s.row * n_qkv + NH * HD) * e_qkv;
      float* kc = s.k + s.pos0 * kv_row;
      convert(column_slice(QKV.act, s.n, kv_row, n_qkv, at), XQ_DTYPE_F32, kc, "KV cache append (K)");
      convert(column_slice(QKV.act, s.n, kv_row, n_qkv, at + kv_row * e_qkv), XQ_DTYPE_F32, s.v + s.pos0 * kv_row,
              "KV cache append (V)");
      if (a.qk_norm) rms_norm(k, kc, s.n * KVH, HD, W.d_k_norm.f32(), a.rms_eps, kc, "RMS_NORM (k_norm)");
      rope(kc, s.n, KVH, pos + s.row);
    }
    xq_op op = Kernels::op(XQ_OP_ATTENTION);
    op.src[0] = f32({s.n, NH, HD}, q + s.row * NH * HD);
    op.src[1] = f32({s.pos0 + s.n, KVH, HD}, s.k);
    op.src[2] = f32({s.pos0 + s.n, KVH, HD}, s.v);
    op.dst = dtensor(O.act, {s.n, NH, HD}, att + s.row * NH * HD * element_bytes(O.act));
    op.f[0] = 1.0 / std::sqrt(static_cast<double>(HD));
    op.i[0] = s.pos0;
    k.run(op, "ATTENTION");
  }
  gemm(O, att, o, "o_proj");
  norm_into(o, O.act, W.d_post_norm.f32(), GU.act, "ADD_RMS_NORM (post-attention)");
  gemm(GU, h, gu, "gate|up_proj");
  {
    const uint64_t e = element_bytes(GU.act);
    xq_op op = Kernels::op(XQ_OP_SWIGLU);
    op.src[0] = column_slice(GU.act, rows, I, 2 * I, gu);
    op.src[1] = column_slice(GU.act, rows, I, 2 * I, gu + I * e);
    op.dst = dtensor(D.act, {rows, I}, act);
    k.run(op, "SWIGLU");
  }
  // Taken only now: growing it earlier could free `pending` before it was read.
  void* dn = scratch(kPending, rows * H * element_bytes(D.act));
  gemm(D, act, dn, "down_proj");
  *out_dtype = D.act;
  return dn;
}

void Model::logits_from_hidden(const float* x, int64_t rows, float* logits) const {
  require_all_weights("logits");
  std::vector<float> host_tmp;
  float* h = temp(kNormed, rows * arch_.hidden, host_tmp);
  rms_norm(*kernels_, x, rows, arch_.hidden, at(final_norm_, d_final_norm_), arch_.rms_eps, h, "RMS_NORM (final)");
  linear(lm_head_, h, rows, logits, "lm_head");
}

std::vector<float> Model::forward(const std::vector<SequenceInput>& batch) {
  std::vector<float> logits;
  step(batch, &logits, nullptr);
  return logits;
}

std::vector<int32_t> Model::forward_greedy(const std::vector<SequenceInput>& batch) {
  std::vector<float> logits;
  std::vector<int32_t> ids;
  step(batch, &logits, &ids);
  return ids;
}

void Model::step(const std::vector<SequenceInput>& batch, std::vector<float>* logits_out, std::vector<int32_t>* ids_out) {
  require_all_weights("forward");
  const int64_t H = arch_.hidden, V = arch_.vocab;
  int64_t rows = 0, out_rows = 0;
  for (const auto& s : batch) {
    if (!s.cache || !s.tokens || s.n <= 0) fail(XQ_ERR_INVALID_ARGUMENT, "forward: a sequence has no tokens or no cache");
    if (s.cache->size() + s.n > s.cache->capacity())
      fail(XQ_ERR_INVALID_ARGUMENT, "forward: {} tokens do not fit the KV cache ({} of {} used)", s.n, s.cache->size(),
           s.cache->capacity());
    if (on_device() ? s.cache->kernels() != kernels_.get() : s.cache->kernels() != nullptr)
      fail(XQ_ERR_INVALID_ARGUMENT, "forward: the KV cache is not in kernel provider '{}''s memory (make it with "
           "KvCache(model, capacity))", kernels_->name());
    rows += s.n;
    out_rows += s.all_logits ? s.n : 1;
  }
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(rows));
  for (const auto& s : batch) ids.insert(ids.end(), s.tokens, s.tokens + s.n);
  std::vector<SequenceSpan> spans;
  int64_t row = 0;
  for (const auto& s : batch) {
    spans.push_back({row, s.n, s.cache->size(), nullptr, nullptr});
    row += s.n;
  }
  // Positions and ids go up before any op of the step: a synchronous upload
  // queued behind a kernel would wait for it.
  std::vector<int32_t> pos = positions(spans, rows);
  const int32_t* p = pos.data();
  if (on_device()) {
    void* d = scratch(kPos, pos.size() * sizeof(int32_t));
    kernels_->upload(d, pos.data(), pos.size() * sizeof(int32_t));
    p = static_cast<const int32_t*>(d);
  }
  std::vector<float> x_host;
  float* x = temp(kX, rows * H, x_host);
  embed(ids.data(), rows, x);
  // Stacked layers leave their last residual add to the next layer's norm.
  const void* pending = nullptr;
  xq_dtype pending_t = XQ_DTYPE_F32;
  for (int64_t l = 0; l < arch_.n_layers; ++l) {
    for (size_t i = 0; i < batch.size(); ++i) {
      spans[i].k = batch[i].cache->k(static_cast<int>(l));
      spans[i].v = batch[i].cache->v(static_cast<int>(l));
    }
    if (on_device() && stacked(static_cast<int>(l))) {
      pending = run_layer_stacked(static_cast<int>(l), x, rows, spans, p, pending, pending_t, &pending_t);
      continue;
    }
    if (pending) add_residual(x, pending, pending_t, rows);
    pending = nullptr;
    run_layer(static_cast<int>(l), x, rows, spans, p, nullptr);
  }
  if (pending) add_residual(x, pending, pending_t, rows);
  for (const auto& s : batch) s.cache->advance(s.n);
  // Only the rows whose logits were asked for go through lm_head.
  const float* hx = x;
  std::vector<float> sel_host;
  if (out_rows != rows) {
    float* sel = temp(kSelected, out_rows * H, sel_host);
    int64_t r = 0, o = 0;
    for (const auto& s : batch) {
      int64_t first = s.all_logits ? r : r + s.n - 1, count = s.all_logits ? s.n : 1;
      copy_floats(sel + o * H, x + first * H, count * H, "CONVERT (select rows)");
      o += count;
      r += s.n;
    }
    hx = sel;
  }
  std::vector<float>& logits = *logits_out;
  auto host_argmax = [&] {
    ids_out->resize(static_cast<size_t>(out_rows));
    for (int64_t r = 0; r < out_rows; ++r) {
      const float* lg = logits.data() + r * V;
      (*ids_out)[static_cast<size_t>(r)] = static_cast<int32_t>(std::max_element(lg, lg + V) - lg);
    }
  };
  if (!on_device()) {
    logits.resize(static_cast<size_t>(out_rows * V));
    logits_from_hidden(hx, out_rows, logits.data());
    if (ids_out) host_argmax();
    return;
  }
  float* d_logits = static_cast<float*>(scratch(kLogits, static_cast<uint64_t>(out_rows * V) * sizeof(float)));
  logits_from_hidden(hx, out_rows, d_logits);
  if (ids_out) {
    xq_op op = Kernels::op(XQ_OP_ARGMAX);
    op.src[0] = f32({out_rows, V}, d_logits);
    void* d_ids = scratch(kIds_out, static_cast<uint64_t>(out_rows) * sizeof(int32_t));
    op.dst = dtensor(XQ_DTYPE_I32, {out_rows}, d_ids);
    if (kernels_->supports(op)) {
      kernels_->run(op, "ARGMAX (greedy)");
      ids_out->resize(static_cast<size_t>(out_rows));
      kernels_->download(ids_out->data(), d_ids, ids_out->size() * sizeof(int32_t));  // the step's one synchronisation
      return;
    }
  }
  logits.resize(static_cast<size_t>(out_rows * V));
  kernels_->download(logits.data(), d_logits, logits.size() * sizeof(float));  // the step's one synchronisation
  if (ids_out) host_argmax();
}

}  // namespace xquant
