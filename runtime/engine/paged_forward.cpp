// paged_forward.cpp: Model's steps over the paged KV cache (model.hpp,
// paged_kv.hpp). A step is the contiguous step of model.cpp with the
// per-sequence KV append and ATTENTION ops of every layer replaced by two
// KV_WRITEs (on device providers one ROPE_KV that also rotates q and k,
// engine/rope_kv.hpp) and one PAGED_ATTENTION over all rows: decode rows of
// many sequences and prefill chunks share one launch per op whatever the batch.
#include "engine/model.hpp"
#include "engine/paged_kv.hpp"
#include "engine/decode_graphs.hpp"
#include "engine/op_profile.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <cmath>
#include <memory>

namespace xquant {

std::vector<float> Model::forward_paged(PagedKvCache& cache, const std::vector<PagedInput>& batch) {
  std::vector<float> logits;
  step_paged(cache, batch, &logits, nullptr);
  return logits;
}

void Model::forget_decode_recordings(uint64_t cache_id) const {
  if (graphs_) graphs_->drop_cache(cache_id);
}

std::vector<int32_t> Model::forward_paged_greedy(PagedKvCache& cache, const std::vector<PagedInput>& batch) {
  std::vector<float> logits;
  std::vector<int32_t> ids;
  step_paged(cache, batch, &logits, &ids);
  return ids;
}

void Model::attend_paged(int layer, const float* q, const float* kf, const xq_device_tensor& v, int64_t rows,
                         xq_dtype att_t, void* att) const {
  const auto& a = arch_;
  const PagedKvCache& c = *paged_->cache;
  const int64_t kv_row = a.n_kv_heads * a.head_dim;
  const xq_device_tensor slots = dtensor(XQ_DTYPE_I32, {rows}, paged_->slots);
  for (int which = 0; which < 2 && kf; ++which) {  // no kf: ROPE_KV wrote this step's K/V rows
    xq_op op = Kernels::op(XQ_OP_KV_WRITE);
    op.dst = which ? c.v_pool(layer) : c.k_pool(layer);
    op.src[0] = which ? v : f32({rows, kv_row}, kf);
    op.src[1] = slots;
    kernels_->run(op, which ? "KV_WRITE (V)" : "KV_WRITE (K)");
  }
  xq_op op = Kernels::op(XQ_OP_PAGED_ATTENTION);
  op.src[0] = f32({rows, a.n_heads, a.head_dim}, q);
  op.src[1] = c.k_pool(layer);
  op.src[2] = c.v_pool(layer);
  op.src[3] = paged_->n_seq > 0
                  ? dtensor(XQ_DTYPE_I32, {2 * rows + paged_->n_seq * paged_->table_ld}, paged_->table)
                  : dtensor(XQ_DTYPE_I32, {rows, paged_->table_ld}, paged_->table);
  op.dst = dtensor(att_t, {rows, a.n_heads, a.head_dim}, att);
  op.f[0] = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
  op.i[0] = paged_->max_seq_rows;  // lets a provider skip its prefill path in decode steps
  op.i[1] = paged_->n_seq;
  kernels_->run(op, "PAGED_ATTENTION");
}

// Hands a provider that plans attention per step (FlashInfer's kernels on
// `cuda`) this step's rows. A decode step (`positions`, one row per
// sequence): each row's keys are its position + 1, padding rows of a
// recorded bucket included (position 0). A step whose ops take one table
// per sequence (`sequences`: prefill chunks, with or without decode rows):
// each sequence's rows and the keys its last row sees. Neither: the
// provider drops its previous plan. Every device step calls it, so a
// recording made under a plan is always launched after the plan of its own
// step (xq_kernel.h's contract).
void Model::plan_attention(const PagedKvCache& cache, int64_t table_ld, int64_t rows, const int32_t* positions,
                           const std::vector<PagedInput>* sequences) {
  if (!kernels_->plans_paged_steps()) return;
  xq_paged_plan plan{};
  plan.struct_size = sizeof(plan);
  std::vector<int32_t> lens, seq_rows;
  if (positions) {
    lens.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) lens[static_cast<size_t>(r)] = positions[r] + 1;
    plan.rows = rows;
    plan.kv_lens = lens.data();
  } else if (sequences) {
    for (const auto& s : *sequences) {
      seq_rows.push_back(static_cast<int32_t>(s.n));
      lens.push_back(static_cast<int32_t>(s.seq->size + s.n));
    }
    plan.seqs = static_cast<int64_t>(sequences->size());
    plan.seq_rows = seq_rows.data();
    plan.seq_kv_lens = lens.data();
  }
  plan.table_ld = table_ld;
  plan.block_size = cache.block_size();
  plan.heads = arch_.n_heads;
  plan.kv_heads = arch_.n_kv_heads;
  plan.head_dim = arch_.head_dim;
  plan.kv_dtype = cache.dtype();
  kernels_->plan_paged_step(plan);
}

// A provider that predates i[1] refuses the 1-D src[3] by its shape, so
// supports_op is the capability check (it judges shapes and dtypes only,
// never reads the tensors, so the pools stand in for q and dst here).
bool Model::takes_sequence_tables(const PagedKvCache& cache, int64_t rows, int64_t n_seq, int64_t mb) const {
  const auto& a = arch_;
  const xq_device_tensor k = cache.k_pool(0);
  xq_op op = Kernels::op(XQ_OP_PAGED_ATTENTION);
  op.src[0] = f32({rows, a.n_heads, a.head_dim}, static_cast<const float*>(k.data));
  op.src[1] = k;
  op.src[2] = cache.v_pool(0);
  op.src[3] = dtensor(XQ_DTYPE_I32, {2 * rows + n_seq * mb}, k.data);
  op.dst = f32({rows, a.n_heads, a.head_dim}, static_cast<const float*>(k.data));
  op.f[0] = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
  op.i[1] = n_seq;
  return kernels_->supports(op);
}

bool Model::run_paged_ops(const PagedStep& step, const int32_t* d_ids, const int32_t* d_pos, const int32_t* d_last,
                          int64_t rows, int64_t out_rows, bool greedy, float* x, float* logits, void* d_ids_out) {
  const int64_t H = arch_.hidden, V = arch_.vocab;
  embed_ids(d_ids, rows, x);
  paged_ = &step;
  struct Reset {
    const PagedStep*& p;
    ~Reset() { p = nullptr; }
  } reset{paged_};
  const std::vector<SequenceSpan> spans;  // attention goes through paged_
  const void* pending = nullptr;
  xq_dtype pending_t = XQ_DTYPE_F32;
  for (int64_t l = 0; l < arch_.n_layers; ++l) {
    if (on_device() && stacked(static_cast<int>(l))) {
      pending = run_layer_stacked(static_cast<int>(l), x, rows, spans, d_pos, pending, pending_t, &pending_t);
      continue;
    }
    if (pending) add_residual(x, pending, pending_t, rows);
    pending = nullptr;
    run_layer(static_cast<int>(l), x, rows, spans, d_pos, nullptr);
  }
  if (pending) add_residual(x, pending, pending_t, rows);

  // Each sequence's last row through lm_head (one gather when rows differ).
  const float* hx = x;
  std::vector<float> sel_host;
  if (out_rows != rows) {
    float* sel = temp(kSelected, out_rows * H, sel_host);
    xq_op op = Kernels::op(XQ_OP_GET_ROWS);
    op.src[0] = f32({rows, H}, x);
    op.src[1] = dtensor(XQ_DTYPE_I32, {out_rows}, d_last);
    op.dst = f32({out_rows, H}, sel);
    kernels_->run(op, "GET_ROWS (last rows)");
    hx = sel;
  }
  logits_from_hidden(hx, out_rows, logits);
  if (!greedy || !on_device()) return false;
  xq_op op = Kernels::op(XQ_OP_ARGMAX);
  op.src[0] = f32({out_rows, V}, logits);
  op.dst = dtensor(XQ_DTYPE_I32, {out_rows}, d_ids_out);
  if (!kernels_->supports(op)) return false;
  kernels_->run(op, "ARGMAX (greedy)");
  return true;
}

void Model::step_paged(PagedKvCache& cache, const std::vector<PagedInput>& batch, std::vector<float>* logits_out,
                       std::vector<int32_t>* ids_out) {
  require_all_weights("forward_paged");
  const int64_t H = arch_.hidden, V = arch_.vocab;
  if (batch.empty()) fail(XQ_ERR_INVALID_ARGUMENT, "forward_paged: empty batch");
  int64_t rows = 0;
  for (const auto& s : batch) {
    if (!s.seq || !s.tokens || s.n <= 0) fail(XQ_ERR_INVALID_ARGUMENT, "forward_paged: a sequence has no tokens");
    for (int64_t i = 0; i < s.n; ++i)
      if (s.tokens[i] < 0 || s.tokens[i] >= V)
        fail(XQ_ERR_INVALID_ARGUMENT, "token {} is outside the vocabulary [0, {})", s.tokens[i], V);
    if (s.seq->size + s.n > arch_.max_positions && arch_.max_positions > 0)
      fail(XQ_ERR_INVALID_ARGUMENT, "forward_paged: {} tokens exceed the model's context of {}", s.seq->size + s.n,
           arch_.max_positions);
    rows += s.n;
  }
  for (const auto& s : batch)
    if (!cache.reserve(*s.seq, s.n))
      fail(XQ_ERR_OUT_OF_MEMORY, "forward_paged: the KV cache has {} free blocks of {} slots; a sequence needs {} more",
           cache.free_blocks(), cache.block_size(), cache.blocks_for(s.seq->size + s.n) - s.seq->blocks.size());
  int64_t mb = 1, max_seq_rows = 1;
  for (const auto& s : batch) {
    mb = std::max<int64_t>(mb, static_cast<int64_t>(s.seq->blocks.size()));
    max_seq_rows = std::max(max_seq_rows, s.n);
  }
  const int64_t n_seq = static_cast<int64_t>(batch.size());
  // A decode-only step (one row per sequence) replays a recording when the
  // provider records: padded to its bucket of rows and table width, the
  // padding rows writing no KV (slot -1) and attending to position 0 of
  // block 0, their outputs never read.
  const bool greedy = ids_out != nullptr;
  DecodeGraphs::Key key;
  const bool graphed = graphs_ && rows == n_seq && !op_profile_enabled() &&
                       DecodeGraphs::bucket_rows(rows) > 0 &&
                       !graphs_->refused(key = {DecodeGraphs::bucket_rows(rows), DecodeGraphs::bucket_table_ld(mb),
                                                cache.id(), greedy});
  const int64_t step_rows = graphed ? key.rows : rows, out_rows = graphed ? key.rows : n_seq;
  // A step with prefill rows gives each sequence's block table once (an
  // 8192-row chunk's per-row tables would be 8192 x (1 + MB) ints filled and
  // uploaded); decode steps and their recordings keep one table per row.
  const bool per_seq = !graphed && rows > n_seq && takes_sequence_tables(cache, rows, n_seq, mb);
  const int64_t ld = graphed ? key.table_ld : per_seq ? mb : 1 + mb;
  // One host array, one upload: ids | slots | last rows | positions | table,
  // where table is per row [step_rows, ld] (position, blocks) or, per
  // sequence, each row's sequence index then n_seq tables of ld blocks, so
  // positions .. the end is PAGED_ATTENTION's src[3] in that form. Every
  // entry is written below (no fill of the whole array first).
  const int64_t n_table = per_seq ? step_rows + n_seq * ld : step_rows * ld;
  const int64_t n_meta = 3 * step_rows + out_rows + n_table;
  std::unique_ptr<int32_t[]> meta(new int32_t[static_cast<size_t>(n_meta)]);
  int32_t* ids = meta.get();
  int32_t* slots = ids + step_rows;
  int32_t* last = slots + step_rows;
  int32_t* pos = last + out_rows;
  int32_t* table = pos + step_rows;
  auto put_blocks = [&](int32_t* at, const std::vector<int32_t>& blocks) {
    std::fill(std::copy(blocks.begin(), blocks.end(), at), at + ld - (per_seq ? 0 : 1), -1);
  };
  int64_t r = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    const auto& s = batch[b];
    if (per_seq) put_blocks(table + step_rows + static_cast<int64_t>(b) * ld, s.seq->blocks);
    for (int64_t t = 0; t < s.n; ++t, ++r) {
      const int64_t p = s.seq->size + t;
      ids[r] = s.tokens[t];
      pos[r] = static_cast<int32_t>(p);
      slots[r] = cache.slot(*s.seq, p);
      if (per_seq) {
        table[r] = static_cast<int32_t>(b);
      } else {
        table[r * ld] = static_cast<int32_t>(p);
        put_blocks(table + r * ld + 1, s.seq->blocks);
      }
    }
    last[b] = static_cast<int32_t>(r - 1);
  }
  for (; r < step_rows; ++r) {  // padding rows of a recorded bucket
    ids[r] = 0, pos[r] = 0, slots[r] = -1, last[r] = static_cast<int32_t>(r);
    table[r * ld] = 0;
    put_blocks(table + r * ld + 1, {0});
  }
  const int32_t* dmeta = meta.get();
  if (on_device()) {
    void* d = scratch(kPagedMeta, static_cast<uint64_t>(n_meta) * sizeof(int32_t));
    kernels_->upload(d, meta.get(), static_cast<uint64_t>(n_meta) * sizeof(int32_t));
    dmeta = static_cast<const int32_t*>(d);
  }
  if (on_device()) {
    const bool decode_step = !per_seq && rows == n_seq;
    plan_attention(cache, ld, step_rows, decode_step ? pos : nullptr, per_seq ? &batch : nullptr);
  }
  const int32_t* d_slots = dmeta + step_rows;
  const int32_t* d_last = d_slots + step_rows;
  const int32_t* d_pos = d_last + out_rows;
  const PagedStep step{&cache, d_slots, per_seq ? d_pos : d_pos + step_rows, ld, max_seq_rows, per_seq ? n_seq : 0};

  std::vector<float> x_host;
  float* x = temp(kX, step_rows * H, x_host);
  float* d_logits = nullptr;
  void* d_ids_out = nullptr;
  if (on_device()) {
    d_logits = static_cast<float*>(scratch(kLogits, static_cast<uint64_t>(out_rows * V) * sizeof(float)));
    d_ids_out = scratch(kIds_out, static_cast<uint64_t>(out_rows) * sizeof(int32_t));
  } else {
    logits_out->resize(static_cast<size_t>(n_seq * V));
    d_logits = logits_out->data();
  }
  auto ops = [&] {
    return run_paged_ops(step, dmeta, d_pos, d_last, step_rows, out_rows, greedy, x, d_logits, d_ids_out);
  };
  bool have_ids = false;
  if (!graphed) {
    have_ids = ops();
  } else if (xq_graph* g = graphs_->find(key, scratch_moves_)) {
    graphs_->launch(g);
    have_ids = greedy;  // recorded with ARGMAX only where the provider has it
  } else {
    // This step runs eagerly (it also sizes every buffer the recording will
    // use), then the same ops are recorded for the next steps of this key.
    have_ids = ops();
    if (have_ids == greedy) graphs_->record(key, scratch_moves_, [&] { ops(); });
  }
  for (const auto& s : batch) s.seq->size += s.n;

  if (on_device() && have_ids) {
    ids_out->resize(static_cast<size_t>(n_seq));
    kernels_->download(ids_out->data(), d_ids_out, ids_out->size() * sizeof(int32_t));  // the step's one synchronisation
    return;
  }
  std::vector<float>& logits = *logits_out;
  if (on_device()) {
    logits.resize(static_cast<size_t>(n_seq * V));
    kernels_->download(logits.data(), d_logits, logits.size() * sizeof(float));
  }
  if (ids_out) {
    ids_out->resize(static_cast<size_t>(n_seq));
    for (int64_t o = 0; o < n_seq; ++o) {
      const float* lg = logits.data() + o * V;
      (*ids_out)[static_cast<size_t>(o)] = static_cast<int32_t>(std::max_element(lg, lg + V) - lg);
    }
  }
}

}  // namespace xquant
