// foreign_blocks.cpp: see foreign_blocks.hpp; also the Model's loading and
// running of foreign-block weights (model.hpp declares these members): the
// Linears, the embedding table (GET_ROWS on the provider, and the tied
// lm_head as a GEMV over the same blocks), and q|k|v, gate|up stacked into
// one weight each on host providers (foreign blocks, and canonical quantized
// checkpoints), so a decode step runs one GEMV (one thread-pool wake-up, one
// activation quantization) for each group instead of three and two.
#include "engine/foreign_blocks.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "engine/model.hpp"

#include <cstring>

namespace xquant {

uint32_t ggml_block_type_id(const std::string& name) {
  // ggml.h enum ggml_type (block types only).
  static const struct {
    const char* name;
    uint32_t id;
  } kTypes[] = {{"Q4_0", 2}, {"Q4_1", 3}, {"Q5_0", 6},  {"Q5_1", 7},  {"Q8_0", 8},  {"Q8_1", 9},
                {"Q2_K", 10}, {"Q3_K", 11}, {"Q4_K", 12}, {"Q5_K", 13}, {"Q6_K", 14}, {"Q8_K", 15}};
  for (const auto& t : kTypes)
    if (name == t.name) return t.id;
  return 0;
}

std::optional<xq_block_tensor> foreign_blocks(const Checkpoint& cp, const TensorEntry& te) {
  if (te.dtype != XQ_DTYPE_BLOCKS || te.shape.size() != 2 || te.shape[0] <= 0) return std::nullopt;
  if (cp.config().get_string("source.format", "") != "gguf") return std::nullopt;
  const uint32_t type = ggml_block_type_id(te.storage_type);
  if (type == 0 || te.nbytes % static_cast<uint64_t>(te.shape[0]) != 0) return std::nullopt;
  xq_tensor_view v = cp.raw(te);
  xq_block_tensor b;
  std::memset(&b, 0, sizeof b);
  b.struct_size = sizeof b;
  b.family = XQ_BLOCKS_GGML;
  b.type = type;
  b.rows = te.shape[0];
  b.cols = te.shape[1];
  b.row_bytes = te.nbytes / static_cast<uint64_t>(te.shape[0]);
  b.data = v.data;
  return b;
}

bool Model::load_foreign_linear(LinearWeights& lw, const std::vector<const LinearDesc*>& parts) {
  if (options_.dequantize_all) return false;
  std::vector<xq_block_tensor> blocks;
  uint64_t bytes = 0;
  for (const LinearDesc* p : parts) {
    const TensorEntry* te = checkpoint_->find(p->weight_name());
    if (!te || checkpoint_->read_module(p->module)) return false;
    std::optional<xq_block_tensor> b = foreign_blocks(*checkpoint_, *te);
    if (!b || b->rows != p->out || b->cols != p->in) return false;
    blocks.push_back(*b);
    bytes += te->nbytes;
  }
  lw.q = kernels_->prepare_blocks(blocks, lw.desc->module);
  if (!lw.q) return false;
  if (!choose_qmatmul_act(lw)) {
    kernels_->release(lw.q);
    lw.q = nullptr;
    return false;
  }
  lw.layout = kernels_->layout(lw.q);
  lw.bytes = bytes;
  n_quantized_ += static_cast<int>(parts.size());
  return true;
}

// Host providers: the embedding table stays in its blocks when the provider
// runs GET_ROWS on them; a tied lm_head then runs QMATMUL on the same weight.
bool Model::load_foreign_embedding(const TensorEntry& et) {
  if (options_.dequantize_all || on_device()) return false;
  std::optional<xq_block_tensor> b = foreign_blocks(*checkpoint_, et);
  if (!b) return false;
  xq_qweight* q = kernels_->prepare_blocks({*b}, et.name);
  if (!q) return false;
  float* const probe = support_probe();
  static const int32_t probe_id[1] = {0};
  xq_op op = Kernels::op(XQ_OP_GET_ROWS);
  op.qweight = q;
  op.src[1] = dtensor(XQ_DTYPE_I32, {1}, probe_id);
  op.dst = f32({1, arch_.hidden}, probe);
  if (!kernels_->supports(op)) {
    kernels_->release(q);
    return false;
  }
  embed_q_ = q;
  embed_bytes_ = et.nbytes;
  return true;
}

void Model::tie_lm_head_to_foreign_embedding() {
  lm_head_.q = embed_q_;
  if (!choose_qmatmul_act(lm_head_)) {
    lm_head_.q = nullptr;
    fail(XQ_ERR_UNSUPPORTED, "kernel provider '{}' runs GET_ROWS but no QMATMUL on the embedding blocks of '{}'",
         kernels_->name(), checkpoint_->path().string());
  }
  lm_head_.layout = kernels_->layout(embed_q_) + " (tied embeddings)";
  lm_head_.bytes = embed_bytes_;
}

void Model::stack_host_layer(const LayerDesc& d, LayerWeights& w, std::vector<bool>& loaded) {
  auto mark = [&](std::initializer_list<int> members, const char* name) {
    for (int i : members) {
      w.linears[static_cast<size_t>(i)].desc = &d.linears[static_cast<size_t>(i)];
      w.linears[static_cast<size_t>(i)].layout = std::string("stacked into ") + name;
      loaded[static_cast<size_t>(i)] = true;
    }
  };
  // Foreign blocks first (each part in its own type, borrowed in place).
  auto stack = [&](std::initializer_list<int> members, const char* name, LinearWeights& out) {
    std::vector<const LinearDesc*> parts;
    for (int i : members) parts.push_back(&d.linears[static_cast<size_t>(i)]);
    for (const auto* p : parts)
      if (p->in != parts[0]->in || p->bias != parts[0]->bias) return;
    auto desc = std::make_unique<LinearDesc>(*parts[0]);
    desc->module = parts[0]->module + " (" + name + ")";
    desc->out = 0;
    for (const auto* p : parts) desc->out += p->out;
    LinearWeights lw;
    lw.desc = desc.get();
    if (!load_foreign_linear(lw, parts)) return;
    if (desc->bias)
      for (const auto* p : parts) {
        std::vector<float> b = read_vector(p->bias_name(), p->out);
        lw.bias.insert(lw.bias.end(), b.begin(), b.end());
      }
    mark(members, name);
    w.fused_desc.push_back(std::move(desc));
    out = std::move(lw);
  };
  stack({LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV}, "q|k|v", w.qkv);
  stack({LayerDesc::kGate, LayerDesc::kUp}, "gate|up", w.gate_up);
  // Then canonical quantized checkpoints: the members' codes stacked into one
  // packed weight (engine/fuse.cpp), as on device providers. Dense models
  // keep one MATMUL per Linear (their numerics stay as they were).
  if (options_.dequantize_all || !checkpoint_->quant_format()) return;
  auto canonical = [&](std::initializer_list<int> members, const char* name, LinearWeights& out) {
    if (out.desc) return;
    LinearWeights lw = load_stacked(d, members, w, name);
    if (!lw.desc) return;
    if (!lw.q) {  // dense members: not stacked here
      w.fused_desc.pop_back();
      return;
    }
    mark(members, name);
    out = std::move(lw);
  };
  canonical({LayerDesc::kQ, LayerDesc::kK, LayerDesc::kV}, "q|k|v", w.qkv);
  canonical({LayerDesc::kGate, LayerDesc::kUp}, "gate|up", w.gate_up);
}

// y_parts[i] [rows, outs[i]] from one GEMM into [rows, sum outs]; at one row
// the parts are the consecutive pieces of the output, so when the callers'
// buffers are consecutive (run_layer's q, k, v and gate, up are) nothing is
// copied.
void Model::linear_stacked(const LinearWeights& lw, const float* x, int64_t rows,
                           std::initializer_list<std::pair<float*, int64_t>> outs, const char* what) const {
  const int64_t n = lw.desc->out;
  float* first = outs.begin()->first;
  bool consecutive = rows == 1;
  float* expect = first;
  for (const auto& [p, w] : outs) {
    consecutive = consecutive && p == expect;
    expect = p + w;
  }
  if (consecutive) return linear(lw, x, rows, first, what);
  float* y = stacked_scratch_.size() >= static_cast<size_t>(rows * n)
                 ? stacked_scratch_.data()
                 : (stacked_scratch_.resize(static_cast<size_t>(rows * n)), stacked_scratch_.data());
  linear(lw, x, rows, y, what);
  int64_t col = 0;
  for (const auto& [p, w] : outs) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(p + r * w, y + r * n + col, static_cast<size_t>(w) * sizeof(float));
    col += w;
  }
}

}  // namespace xquant
