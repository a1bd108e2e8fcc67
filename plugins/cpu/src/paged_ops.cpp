// paged_ops.cpp: the paged KV cache on the `cpu` provider: KV_WRITE (rows
// into their block slots) and PAGED_ATTENTION (one query row per sequence
// position over that sequence's block table, given per row or, with i[1] > 0,
// once per sequence), F32 pools only. Contracts in
// abi/include/xquant/xq_kernel.h.
#include "cpu.hpp"
#include "decode_attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace xquant::cpu {

using sdk::format;

namespace {

[[noreturn]] void reject(const char* name, const std::string& why) {
  throw Error(XQ_ERR_UNSUPPORTED, format("cpu provider: %s: %s", name, why.c_str()));
}

bool row_strided(const xq_device_tensor& t) {
  return t.ndim == 2 && t.strides[1] == 1 && t.strides[0] >= t.shape[1] && t.shape[1] > 0;
}

void need_pool(const char* name, const xq_device_tensor& p, const char* what) {
  if (!present(p)) reject(name, format("%s is missing", what));
  if (p.ndim != 4 || !is_contiguous(p)) reject(name, format("%s must be contiguous [NB, BS, KVH, D]", what));
  if (p.dtype != XQ_DTYPE_F32) reject(name, format("%s must be F32", what));
}

}  // namespace

bool is_paged_op(xq_op_type t) { return t == XQ_OP_KV_WRITE || t == XQ_OP_PAGED_ATTENTION; }

void check_paged(const xq_op& op) {
  const auto& d = op.dst;
  const auto* s = op.src;
  if (op.type == XQ_OP_KV_WRITE) {
    const char* n = "KV_WRITE";
    need_pool(n, d, "dst (pool)");
    if (!present(s[0]) || s[0].dtype != XQ_DTYPE_F32 || !(is_contiguous(s[0]) || row_strided(s[0])))
      reject(n, "src[0] must be F32, contiguous or 2-D with strides {ld, 1}");
    if (cols_of(s[0]) * (s[0].ndim == 3 ? s[0].shape[1] : 1) != d.shape[2] * d.shape[3])
      reject(n, "src[0] rows must hold KVH * D elements");
    if (!present(s[1]) || s[1].dtype != XQ_DTYPE_I32 || !is_contiguous(s[1])) reject(n, "src[1] (slots) must be I32");
    if (numel(s[1]) * d.shape[2] * d.shape[3] != numel(s[0])) reject(n, "src[1] must hold one slot per row");
    return;
  }
  const char* n = "PAGED_ATTENTION";
  if (!present(s[0]) || s[0].dtype != XQ_DTYPE_F32 || s[0].ndim != 3 || !is_contiguous(s[0]))
    reject(n, "src[0] (q) must be F32 [T, H, D]");
  need_pool(n, s[1], "src[1] (K pool)");
  need_pool(n, s[2], "src[2] (V pool)");
  for (int i = 0; i < 4; ++i)
    if (s[1].shape[i] != s[2].shape[i]) reject(n, "K and V pools differ in shape");
  const int64_t T = s[0].shape[0], H = s[0].shape[1], D = s[0].shape[2], KVH = s[1].shape[2];
  if (s[1].shape[3] != D) reject(n, "pool head_dim differs from q's");
  if (KVH <= 0 || H % KVH != 0) reject(n, "heads must be a multiple of kv heads");
  if (!present(d) || d.dtype != XQ_DTYPE_F32 || d.ndim != 3 || !is_contiguous(d) || d.shape[0] != T ||
      d.shape[1] != H || d.shape[2] != D)
    reject(n, "dst must be F32 [T, H, D]");
  if (op.i[1] < 0) reject(n, "i[1] (sequences with one block table each) must be >= 0");
  if (op.i[1] == 0) {
    if (!present(s[3]) || s[3].dtype != XQ_DTYPE_I32 || s[3].ndim != 2 || !is_contiguous(s[3]) ||
        s[3].shape[0] != T || s[3].shape[1] < 2)
      reject(n, "src[3] must be I32 [T, 1 + MB]");
    return;
  }
  if (!present(s[3]) || s[3].dtype != XQ_DTYPE_I32 || s[3].ndim != 1 || !is_contiguous(s[3]) ||
      s[3].shape[0] < 2 * T + op.i[1] || (s[3].shape[0] - 2 * T) % op.i[1] != 0)
    reject(n, "with i[1] = n_seq sequences src[3] must be I32 [2T + n_seq * MB] with MB >= 1");
}

void run_kv_write(const Host& host, const xq_op& op) {
  (void)host;
  const auto& d = op.dst;
  const int64_t row = d.shape[2] * d.shape[3], slots = d.shape[0] * d.shape[1];
  const int64_t T = numel(op.src[1]);
  const int64_t ld = row_strided(op.src[0]) && !is_contiguous(op.src[0]) ? op.src[0].strides[0] : row;
  const float* src = static_cast<const float*>(op.src[0].data);
  const int32_t* slot = static_cast<const int32_t*>(op.src[1].data);
  float* pool = static_cast<float*>(d.data);
  for (int64_t t = 0; t < T; ++t) {
    if (slot[t] < 0) continue;
    if (slot[t] >= slots) throw Error(XQ_ERR_INVALID_ARGUMENT, format("cpu provider: KV_WRITE: slot %d outside the pool", slot[t]));
    std::memcpy(pool + static_cast<int64_t>(slot[t]) * row, src + t * ld, static_cast<size_t>(row) * sizeof(float));
  }
}

namespace {

// src[3] read in either layout (docs/abi.md, XQ_OP_PAGED_ATTENTION): per row
// (i[1] = 0) I32 [T, 1 + MB], each row its position then its sequence's
// blocks; or per sequence (i[1] = n_seq) I32 [2T + n_seq * MB], the rows'
// positions, the rows' sequence indices, then one table of MB blocks per
// sequence.
struct RowTables {
  const int32_t* data;
  int64_t T, n_seq, width;  // width: MB, the block ids in one table

  RowTables(const xq_op& op, int64_t T_)
      : data(static_cast<const int32_t*>(op.src[3].data)), T(T_), n_seq(op.i[1]),
        width(n_seq > 0 ? (op.src[3].shape[0] - 2 * T_) / n_seq : op.src[3].shape[1] - 1) {}
  int64_t position(int64_t t) const { return n_seq > 0 ? data[t] : data[t * (width + 1)]; }
  int64_t sequence(int64_t t) const { return n_seq > 0 ? data[T + t] : 0; }
  const int32_t* blocks(int64_t t) const {
    return n_seq > 0 ? data + 2 * T + data[T + t] * width : data + t * (width + 1) + 1;
  }
};

}  // namespace

// Each row attends to its visible keys gathered through its block table.
void run_paged_attention(const Host& host, const xq_op& op) {
  const auto* s = op.src;
  const int64_t T = s[0].shape[0], H = s[0].shape[1], D = s[0].shape[2];
  const int64_t NB = s[1].shape[0], BS = s[1].shape[1], KVH = s[1].shape[2];
  const int64_t group = H / KVH;
  const float scale = static_cast<float>(op.f[0]);
  const float* q = static_cast<const float*>(s[0].data);
  const float* kp = static_cast<const float*>(s[1].data);
  const float* vp = static_cast<const float*>(s[2].data);
  const RowTables tables(op, T);
  float* out = static_cast<float*>(op.dst.data);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = tables.position(t), seq = tables.sequence(t);
    if (seq < 0 || (tables.n_seq > 0 && seq >= tables.n_seq))
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("cpu provider: PAGED_ATTENTION: row %lld's sequence %lld is outside "
                                                  "[0, %lld)", static_cast<long long>(t), static_cast<long long>(seq),
                                                  static_cast<long long>(tables.n_seq)));
    if (p < 0 || p / BS + 1 > tables.width)
      throw Error(XQ_ERR_INVALID_ARGUMENT, format("cpu provider: PAGED_ATTENTION: row %lld's position %lld is outside its "
                                                  "block table", static_cast<long long>(t), static_cast<long long>(p)));
    const int32_t* blocks = tables.blocks(t);
    for (int64_t b = 0; b <= p / BS; ++b)
      if (blocks[b] < 0 || blocks[b] >= NB)
        throw Error(XQ_ERR_INVALID_ARGUMENT, "cpu provider: PAGED_ATTENTION: a block id outside the pool");
  }
  // Per (row, KV head): the row's visible keys as one run per cache block,
  // the KV head's query heads together (decode_attention.hpp, as
  // run_attention's decode path).
  host.parallel_for(static_cast<uint64_t>(T * KVH), 1, [&](uint64_t b, uint64_t e) {
    thread_local std::vector<float> scratch;
    thread_local std::vector<KeyRun> runs;
    for (uint64_t tk = b; tk < e; ++tk) {
      const int64_t t = static_cast<int64_t>(tk) / KVH, kh = static_cast<int64_t>(tk) % KVH;
      const int32_t* blocks = tables.blocks(t);
      const int64_t nk = tables.position(t) + 1;
      runs.clear();
      for (int64_t j = 0; j < nk; j += BS) {
        const int64_t at = (static_cast<int64_t>(blocks[j / BS]) * BS * KVH + kh) * D;
        runs.push_back({kp + at, vp + at, std::min(BS, nk - j)});
      }
      scratch.resize(static_cast<size_t>(group * nk));
      const int64_t row = (t * H + kh * group) * D;
      decode_attention_group(q + row, group, D, scale, runs.data(), static_cast<int64_t>(runs.size()), KVH * D,
                             scratch.data(), out + row);
    }
  });
}

}  // namespace xquant::cpu
