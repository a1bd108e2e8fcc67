// model.cpp: loading a Llama-family checkpoint into the engine and running
// its forward pass through a kernel provider (see model.hpp).
#include "engine/model.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/tokenizer/tokenizer.hpp"

#include <cmath>
#include <cstring>

namespace xquant {

namespace fs = std::filesystem;

KvCache::KvCache(const Architecture& arch, int64_t capacity) : capacity_(capacity) {
  if (capacity <= 0) fail(XQ_ERR_INVALID_ARGUMENT, "KV cache capacity must be positive (got {})", capacity);
  size_t per = static_cast<size_t>(capacity * arch.n_kv_heads * arch.head_dim);
  k_.assign(static_cast<size_t>(arch.n_layers), std::vector<float>(per));
  v_.assign(static_cast<size_t>(arch.n_layers), std::vector<float>(per));
}

std::unique_ptr<Model> Model::open(Runtime& runtime, const fs::path& path, const ModelOptions& options) {
  auto cp = Checkpoint::open(runtime, path);
  std::unique_ptr<Model> m(new Model(runtime, std::move(cp), options));
  m->load_weights();
  return m;
}

Model::Model(Runtime& runtime, std::unique_ptr<Checkpoint> cp, const ModelOptions& options)
    : runtime_(runtime), options_(options), checkpoint_(std::move(cp)) {
  arch_ = Architecture::from_config(checkpoint_->config());
  kernels_ = std::make_unique<Kernels>(runtime_.plugins().require(XQ_PLUGIN_KERNEL_PROVIDER, options_.provider));
}

Model::~Model() {
  if (!kernels_) return;
  for (auto& l : layers_)
    for (auto& lw : l.linears) kernels_->release(lw.q);
  kernels_->release(lm_head_.q);
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
  std::optional<QuantTensor> qt = checkpoint_->read_module(d.module);
  if (!qt && te && te->has_quantized && !options_.dequantize_all) qt = checkpoint_->read_quantized(*te);
  if (qt) {
    const auto& q = qt->get();
    if (q.rows != d.out || q.cols != d.in)
      fail(XQ_ERR_MALFORMED, "quantized '{}' is [{}, {}], expected [{}, {}]", d.module, q.rows, q.cols, d.out, d.in);
    if (!options_.dequantize_all) lw.q = kernels_->prepare(q, d.module);
    if (lw.q) {
      lw.layout = kernels_->layout(lw.q);
      uint64_t ns = q.granularity == XQ_GRAN_TENSOR ? 1 : static_cast<uint64_t>(q.rows * q.n_groups);
      lw.bytes = static_cast<uint64_t>(q.rows * q.cols) + ns * 4 * (q.zero_points ? 2 : 1);
      ++n_quantized_;
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
  return lw;
}

void Model::load_weights() {
  const auto& a = arch_;
  const TensorEntry& et = checkpoint_->require(a.embed);
  if (et.shape.size() != 2 || et.shape[0] != a.vocab || et.shape[1] != a.hidden)
    fail(XQ_ERR_MALFORMED, "'{}' has shape {}, expected [{}, {}]", a.embed, et.shape_text(), a.vocab, a.hidden);
  embed_ = checkpoint_->read_f32(et);
  final_norm_ = read_vector(a.final_norm, a.hidden);
  layers_.resize(static_cast<size_t>(a.n_layers));
  for (int64_t l = 0; l < a.n_layers; ++l) {
    const LayerDesc& d = a.layers[static_cast<size_t>(l)];
    LayerWeights& w = layers_[static_cast<size_t>(l)];
    w.input_norm = read_vector(d.input_norm, a.hidden);
    w.post_norm = read_vector(d.post_norm, a.hidden);
    if (a.qk_norm) {
      w.q_norm = read_vector(d.q_norm, a.head_dim);
      w.k_norm = read_vector(d.k_norm, a.head_dim);
    }
    for (const auto& ld : d.linears) w.linears.push_back(load_linear(ld));
  }
  // lm_head: its own tensor when the file has one (even if config says tied).
  static const LinearDesc lm_desc{"lm_head", "lm_head", 0, 0, false};
  if (checkpoint_->find(a.lm_head) || checkpoint_->read_module("lm_head")) {
    auto* desc = new LinearDesc{"lm_head", "lm_head", a.vocab, a.hidden, false};
    lm_owned_.reset(desc);
    lm_head_ = load_linear(*desc);
  } else {
    if (!a.tie_embeddings) logger().warn("'{}' has no lm_head.weight: using the tied embeddings", checkpoint_->path().string());
    lm_head_.desc = &lm_desc;
    lm_head_.layout = "f32 (tied embeddings)";
    lm_head_.bytes = embed_.size() * sizeof(float);
  }
  // RoPE: llama3 factors from the file (GGUF rope_freqs) or from the config.
  if (const TensorEntry* rf = checkpoint_->find("rope_freqs.weight")) {
    rope_factors_ = checkpoint_->read_f32(*rf);
    if (static_cast<int64_t>(rope_factors_.size()) != a.head_dim / 2)
      fail(XQ_ERR_MALFORMED, "rope_freqs.weight has {} entries, expected head_dim/2 = {}", rope_factors_.size(), a.head_dim / 2);
  } else {
    rope_factors_ = a.llama3_freq_factors();
  }
  if (n_dequantized_ > 0)
    logger().info("{} of {} quantized Linears dequantized to F32 on load (kernel provider '{}' does not run their scheme)",
                  n_dequantized_, n_dequantized_ + n_quantized_, kernels_->name());
  logger().debug("model '{}': {} layers, hidden {}, {} Linears run quantized on '{}'", checkpoint_->path().string(),
                 a.n_layers, a.hidden, n_quantized_, kernels_->name());
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

uint64_t Model::weight_bytes_per_token() const {
  uint64_t b = lm_head_.bytes + final_norm_.size() * 4 + static_cast<uint64_t>(arch_.hidden) * 4;
  for (const auto& l : layers_) {
    b += (l.input_norm.size() + l.post_norm.size() + l.q_norm.size() + l.k_norm.size()) * 4;
    for (const auto& lw : l.linears) b += lw.bytes + lw.bias.size() * 4;
  }
  return b;
}

void Model::linear(const LinearWeights& lw, const float* x, int64_t rows, float* y, const char* what) const {
  const int64_t out = lw.desc->out ? lw.desc->out : arch_.vocab, in = lw.desc->in ? lw.desc->in : arch_.hidden;
  xq_op op = Kernels::op(lw.q ? XQ_OP_QMATMUL : XQ_OP_MATMUL);
  op.src[0] = f32({rows, in}, x);
  if (lw.q) {
    op.qweight = lw.q;
  } else {
    op.src[1] = f32({out, in}, lw.w.empty() ? embed_.data() : lw.w.data());
  }
  if (!lw.bias.empty()) op.src[2] = f32({out}, lw.bias.data());
  op.dst = f32({rows, out}, y);
  kernels_->run(op, what);
}

void Model::embed(const int32_t* ids, int64_t n, float* out) const {
  xq_op op = Kernels::op(XQ_OP_GET_ROWS);
  op.src[0] = f32({arch_.vocab, arch_.hidden}, embed_.data());
  op.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {n}, ids);
  op.dst = f32({n, arch_.hidden}, out);
  kernels_->run(op, "GET_ROWS (embeddings)");
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

void Model::layer_forward(int layer, float* x, int64_t rows, const std::vector<SequenceSpan>& spans,
                          const GroupInputTap& tap) const {
  const auto& a = arch_;
  const LayerWeights& W = layers_.at(static_cast<size_t>(layer));
  const int64_t H = a.hidden, NH = a.n_heads, KVH = a.n_kv_heads, HD = a.head_dim, I = a.intermediate;
  const Kernels& k = *kernels_;
  std::vector<float> h(static_cast<size_t>(rows * H)), q(static_cast<size_t>(rows * NH * HD)),
      kk(static_cast<size_t>(rows * KVH * HD)), vv(static_cast<size_t>(rows * KVH * HD)),
      att(static_cast<size_t>(rows * NH * HD));

  rms_norm(k, x, rows, H, W.input_norm.data(), a.rms_eps, h.data(), "RMS_NORM (input)");
  if (tap) tap(LayerDesc::kAttnIn, h.data(), rows, H);
  linear(W.linears[LayerDesc::kQ], h.data(), rows, q.data(), "q_proj");
  linear(W.linears[LayerDesc::kK], h.data(), rows, kk.data(), "k_proj");
  linear(W.linears[LayerDesc::kV], h.data(), rows, vv.data(), "v_proj");
  if (a.qk_norm) {
    rms_norm(k, q.data(), rows * NH, HD, W.q_norm.data(), a.rms_eps, q.data(), "RMS_NORM (q_norm)");
    rms_norm(k, kk.data(), rows * KVH, HD, W.k_norm.data(), a.rms_eps, kk.data(), "RMS_NORM (k_norm)");
  }
  // RoPE at each row's absolute position in its sequence.
  std::vector<int32_t> pos(static_cast<size_t>(rows));
  int64_t covered = 0;
  for (const auto& s : spans) {
    if (s.row < 0 || s.n < 0 || s.row + s.n > rows) fail(XQ_ERR_INVALID_ARGUMENT, "sequence span outside the batch rows");
    for (int64_t t = 0; t < s.n; ++t) pos[static_cast<size_t>(s.row + t)] = static_cast<int32_t>(s.pos0 + t);
    covered += s.n;
  }
  if (covered != rows) fail(XQ_ERR_INVALID_ARGUMENT, "sequence spans cover {} of {} rows", covered, rows);
  for (int which = 0; which < 2; ++which) {
    xq_op op = Kernels::op(XQ_OP_ROPE);
    op.dst = f32({rows, which ? KVH : NH, HD}, which ? kk.data() : q.data());
    op.src[0] = op.dst;
    op.src[1] = sdk::device_tensor(XQ_DTYPE_I32, {rows}, pos.data());
    if (!rope_factors_.empty()) op.src[2] = f32({HD / 2}, rope_factors_.data());
    op.i[0] = static_cast<int64_t>(a.pairing);
    op.i[1] = HD;
    op.f[0] = a.rope_theta;
    op.f[1] = a.rope_position_scale();
    k.run(op, "ROPE");
  }
  const size_t kv_row = static_cast<size_t>(KVH * HD);
  for (const auto& s : spans) {
    if (s.n == 0) continue;
    std::memcpy(s.k + s.pos0 * kv_row, kk.data() + s.row * kv_row, s.n * kv_row * sizeof(float));
    std::memcpy(s.v + s.pos0 * kv_row, vv.data() + s.row * kv_row, s.n * kv_row * sizeof(float));
    xq_op op = Kernels::op(XQ_OP_ATTENTION);
    op.src[0] = f32({s.n, NH, HD}, q.data() + s.row * NH * HD);
    op.src[1] = f32({s.pos0 + s.n, KVH, HD}, s.k);
    op.src[2] = f32({s.pos0 + s.n, KVH, HD}, s.v);
    op.dst = f32({s.n, NH, HD}, att.data() + s.row * NH * HD);
    op.f[0] = 1.0 / std::sqrt(static_cast<double>(HD));
    op.i[0] = s.pos0;
    k.run(op, "ATTENTION");
  }
  if (tap) tap(LayerDesc::kAttnOut, att.data(), rows, NH * HD);
  linear(W.linears[LayerDesc::kO], att.data(), rows, h.data(), "o_proj");
  add_inplace(k, x, h.data(), rows, H);

  std::vector<float> g(static_cast<size_t>(rows * I)), u(static_cast<size_t>(rows * I));
  rms_norm(k, x, rows, H, W.post_norm.data(), a.rms_eps, h.data(), "RMS_NORM (post-attention)");
  if (tap) tap(LayerDesc::kMlpIn, h.data(), rows, H);
  linear(W.linears[LayerDesc::kGate], h.data(), rows, g.data(), "gate_proj");
  linear(W.linears[LayerDesc::kUp], h.data(), rows, u.data(), "up_proj");
  {
    xq_op op = Kernels::op(XQ_OP_SWIGLU);
    op.src[0] = f32({rows, I}, g.data());
    op.src[1] = f32({rows, I}, u.data());
    op.dst = op.src[0];
    k.run(op, "SWIGLU");
  }
  if (tap) tap(LayerDesc::kMlpOut, g.data(), rows, I);
  linear(W.linears[LayerDesc::kDown], g.data(), rows, h.data(), "down_proj");
  add_inplace(k, x, h.data(), rows, H);
}

void Model::logits_from_hidden(const float* x, int64_t rows, float* logits) const {
  std::vector<float> h(static_cast<size_t>(rows * arch_.hidden));
  rms_norm(*kernels_, x, rows, arch_.hidden, final_norm_.data(), arch_.rms_eps, h.data(), "RMS_NORM (final)");
  linear(lm_head_, h.data(), rows, logits, "lm_head");
}

std::vector<float> Model::forward(const std::vector<SequenceInput>& batch) {
  const int64_t H = arch_.hidden;
  int64_t rows = 0, out_rows = 0;
  for (const auto& s : batch) {
    if (!s.cache || !s.tokens || s.n <= 0) fail(XQ_ERR_INVALID_ARGUMENT, "forward: a sequence has no tokens or no cache");
    if (s.cache->size() + s.n > s.cache->capacity())
      fail(XQ_ERR_INVALID_ARGUMENT, "forward: {} tokens do not fit the KV cache ({} of {} used)", s.n, s.cache->size(),
           s.cache->capacity());
    rows += s.n;
    out_rows += s.all_logits ? s.n : 1;
  }
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(rows));
  for (const auto& s : batch) ids.insert(ids.end(), s.tokens, s.tokens + s.n);
  std::vector<float> x(static_cast<size_t>(rows * H));
  embed(ids.data(), rows, x.data());
  for (int64_t l = 0; l < arch_.n_layers; ++l) {
    std::vector<SequenceSpan> spans;
    int64_t row = 0;
    for (const auto& s : batch) {
      spans.push_back({row, s.n, s.cache->size(), s.cache->k(static_cast<int>(l)), s.cache->v(static_cast<int>(l))});
      row += s.n;
    }
    layer_forward(static_cast<int>(l), x.data(), rows, spans);
  }
  for (const auto& s : batch) s.cache->advance(s.n);
  // Only the rows whose logits were asked for go through lm_head.
  std::vector<float> sel;
  const float* hx = x.data();
  if (out_rows != rows) {
    sel.resize(static_cast<size_t>(out_rows * H));
    int64_t row = 0, o = 0;
    for (const auto& s : batch) {
      int64_t first = s.all_logits ? row : row + s.n - 1, count = s.all_logits ? s.n : 1;
      std::memcpy(sel.data() + o * H, x.data() + first * H, static_cast<size_t>(count * H) * sizeof(float));
      o += count;
      row += s.n;
    }
    hx = sel.data();
  }
  std::vector<float> logits(static_cast<size_t>(out_rows * arch_.vocab));
  logits_from_hidden(hx, out_rows, logits.data());
  return logits;
}

}  // namespace xquant
