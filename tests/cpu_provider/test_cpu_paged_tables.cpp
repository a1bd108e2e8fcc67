// test_cpu_paged_tables.cpp: the `cpu` provider's PAGED_ATTENTION takes its
// block tables per row (i[1] = 0, I32 [T, 1 + MB]) or once per sequence
// (i[1] = n_seq, I32 [2T + n_seq * MB]: positions, sequence indices, tables;
// docs/abi.md). Both encodings of the same rows over the same pools give
// bit-identical outputs: several sequences with shuffled blocks, a prefill
// chunk between decode rows, rows out of sequence order. Bad sequence
// indices and shapes are refused by name.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "plugins/registry.hpp"

#include <xquant/sdk/tensor.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

using namespace xquant;

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_cpu_paged_tables {

namespace {

struct CpuPlugin {
  Runtime rt{RuntimeOptions{}};
  LoadedPlugin* p = rt.plugins().find(XQ_PLUGIN_KERNEL_PROVIDER, "cpu");
  xq_status run(const xq_op& op) const { return p->kernel().run_op(p->state, &op); }
  bool supports(const xq_op& op) const { return p->kernel().supports_op(p->state, &op) != 0; }
};
CpuPlugin& cpu() {
  static CpuPlugin f;
  return f;
}

std::mt19937& rng() {
  static std::mt19937 g(std::random_device{}());
  return g;
}

// One query row: its sequence and position.
struct Row {
  int32_t seq, pos;
};

struct Case {
  int64_t H = 8, KVH = 2, D = 16, BS = 4, NB = 40;
  std::vector<std::vector<int32_t>> tables;  // per sequence, its blocks
  std::vector<Row> rows;
  std::vector<float> q, k, v;
  int64_t mb() const {
    size_t m = 1;
    for (const auto& t : tables) m = std::max(m, t.size());
    return static_cast<int64_t>(m);
  }
  int64_t T() const { return static_cast<int64_t>(rows.size()); }

  std::vector<int32_t> per_row(int64_t ld) const {
    std::vector<int32_t> out(static_cast<size_t>(T() * ld), -1);
    for (int64_t t = 0; t < T(); ++t) {
      out[t * ld] = rows[t].pos;
      const auto& b = tables[rows[t].seq];
      std::copy(b.begin(), b.end(), out.begin() + t * ld + 1);
    }
    return out;
  }
  std::vector<int32_t> per_sequence() const {
    const int64_t mb_ = mb();
    std::vector<int32_t> out(static_cast<size_t>(2 * T() + static_cast<int64_t>(tables.size()) * mb_), -1);
    for (int64_t t = 0; t < T(); ++t) out[t] = rows[t].pos, out[T() + t] = rows[t].seq;
    for (size_t s = 0; s < tables.size(); ++s)
      std::copy(tables[s].begin(), tables[s].end(), out.begin() + 2 * T() + static_cast<int64_t>(s) * mb_);
    return out;
  }
  xq_op op(const std::vector<int32_t>& table, bool seq_form, std::vector<float>& out) const {
    xq_op o = sdk::make_op(XQ_OP_PAGED_ATTENTION);
    o.src[0] = sdk::device_tensor(XQ_DTYPE_F32, {T(), H, D}, q.data());
    o.src[1] = sdk::device_tensor(XQ_DTYPE_F32, {NB, BS, KVH, D}, k.data());
    o.src[2] = sdk::device_tensor(XQ_DTYPE_F32, {NB, BS, KVH, D}, v.data());
    o.src[3] = seq_form ? sdk::device_tensor(XQ_DTYPE_I32, {static_cast<int64_t>(table.size())}, table.data())
                        : sdk::device_tensor(XQ_DTYPE_I32, {T(), static_cast<int64_t>(table.size()) / T()}, table.data());
    out.assign(static_cast<size_t>(T() * H * D), -7.f);
    o.dst = sdk::device_tensor(XQ_DTYPE_F32, {T(), H, D}, out.data());
    o.f[0] = 0.25;
    o.i[1] = seq_form ? static_cast<int64_t>(tables.size()) : 0;
    return o;
  }
};

// Sequences of `lengths` tokens so far over shuffled blocks of one pool;
// each gets decode rows (its last position) or a chunk of prefill rows, and
// the rows are shuffled so no sequence's rows are adjacent by construction.
Case make_case(const std::vector<int>& lengths, const std::vector<int>& chunk) {
  Case c;
  std::vector<int32_t> free(static_cast<size_t>(c.NB));
  std::iota(free.begin(), free.end(), 0);
  std::shuffle(free.begin(), free.end(), rng());
  size_t next = 0;
  for (size_t s = 0; s < lengths.size(); ++s) {
    std::vector<int32_t> blocks;
    for (int64_t b = 0; b < (lengths[s] + c.BS - 1) / c.BS; ++b) blocks.push_back(free.at(next++));
    c.tables.push_back(blocks);
    for (int i = chunk[s]; i > 0; --i) c.rows.push_back({static_cast<int32_t>(s), lengths[s] - i});
  }
  std::shuffle(c.rows.begin(), c.rows.end(), rng());
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  c.q.resize(static_cast<size_t>(c.T() * c.H * c.D));
  c.k.resize(static_cast<size_t>(c.NB * c.BS * c.KVH * c.D));
  c.v.resize(c.k.size());
  for (auto* x : {&c.q, &c.k, &c.v})
    for (auto& e : *x) e = u(rng());
  return c;
}

}  // namespace

TEST(CpuPagedTables, PerSequenceTablesGiveThePerRowOutputs) {
  // A 21-row prefill chunk (two rows reaching into a fresh block) among
  // decode rows; a sequence with one block; table widths wider than needed.
  const Case c = make_case({30, 9, 3, 17, 26}, {21, 1, 1, 5, 1});
  for (int64_t extra : {0, 3}) {
    std::vector<float> a, b;
    const auto rows_table = c.per_row(1 + c.mb() + extra);
    const auto seq_table = c.per_sequence();
    const xq_op per_row = c.op(rows_table, false, a), per_seq = c.op(seq_table, true, b);
    ASSERT_TRUE(cpu().supports(per_seq));
    ASSERT_EQ(cpu().run(per_row), XQ_OK) << last_error();
    ASSERT_EQ(cpu().run(per_seq), XQ_OK) << last_error();
    EXPECT_EQ(a, b);
    EXPECT_EQ(std::count(b.begin(), b.end(), -7.f), 0);
  }
}

TEST(CpuPagedTables, RefusesBadSequenceTables) {
  Case c = make_case({12, 5}, {4, 1});
  std::vector<float> out;
  auto table = c.per_sequence();
  table[c.T() + 2] = 2;  // a row of sequence 2 of 2
  ASSERT_NE(cpu().run(c.op(table, true, out)), XQ_OK);
  EXPECT_NE(last_error().find("sequence 2 is outside [0, 2)"), std::string::npos) << last_error();
  table = c.per_sequence();
  table[0] = 12;  // position 12 needs a fourth block of a three-block table
  ASSERT_NE(cpu().run(c.op(table, true, out)), XQ_OK);
  EXPECT_NE(last_error().find("outside its block table"), std::string::npos) << last_error();
  table = c.per_sequence();
  table.pop_back();  // not 2T + n_seq * MB
  xq_op o = c.op(table, true, out);
  EXPECT_FALSE(cpu().supports(o));
  ASSERT_NE(cpu().run(o), XQ_OK);
  EXPECT_NE(last_error().find("2T + n_seq * MB"), std::string::npos) << last_error();
  o = c.op(c.per_row(1 + c.mb()), false, out);
  o.i[1] = 2;  // the per-row form announced as per-sequence
  EXPECT_FALSE(cpu().supports(o));
}

}  // namespace test_cpu_paged_tables
