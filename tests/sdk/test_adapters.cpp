// test_adapters.cpp: the plugin adapters of sdk/plugin.hpp seen through
// their C vtables: the kernel-provider adapter, and the loader/format
// adapters' ownership of a quantized tensor that an Impl fails to fill.
#include "fake_host.hpp"

#include <xquant/sdk/plugin.hpp>

#include <gtest/gtest.h>

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>

namespace sdk = xquant::sdk;

struct xq_qweight {
  int id = 7;
};

namespace {

// A provider whose behaviour each test sets.
struct FakeProvider : sdk::PluginBase {
  using PluginBase::PluginBase;
  bool throw_in_supports = false;
  bool throw_in_run = false;
  int released = 0;
  uint32_t score(const char** why) {
    if (why) *why = "fake";
    return 5;
  }
  void* alloc(uint64_t n) { return host.alloc<unsigned char>(n ? n : 1); }
  void free(void* p) { host.free(p); }
  void upload(void*, const void*, uint64_t) {}
  void download(void*, const void*, uint64_t) { throw std::runtime_error("download failed"); }
  void synchronize() {}
  bool supports(const xq_op& op) {
    if (throw_in_supports) throw sdk::Error(XQ_ERR_UNSUPPORTED, "no");
    return op.type == XQ_OP_MATMUL;
  }
  void run(const xq_op&) {
    if (throw_in_run) throw sdk::Error(XQ_ERR_DEVICE, "kernel launch failed");
  }
  xq_qweight* prepare(const xq_quant_tensor&) { return new xq_qweight; }
  void release(xq_qweight* w) {
    ++released;
    delete w;
  }
  const char* layout(const xq_qweight*) { return "fake-layout"; }
};

using Kernel = sdk::KernelAdapter<FakeProvider>;

// A provider that plans attention per step (xq_kernel_vtable.plan_paged_step).
// With `declines`, it never writes `taken` (as a provider that cannot plan
// this step leaves it).
struct PlanningProvider : FakeProvider {
  using FakeProvider::FakeProvider;
  int64_t planned_rows = -1, planned_seqs = -1;
  bool declines = false;
  void plan_paged(xq_paged_plan& plan) {
    planned_rows = plan.rows;
    planned_seqs = plan.seqs;
    if (!declines) plan.taken = plan.rows > 0 || plan.seqs > 0 ? 1 : 0;
  }
};

}  // namespace

TEST(SdkKernelAdapter, PlanPagedStepIsFilledOnlyForProvidersThatPlanAndChecksItsArguments) {
  EXPECT_EQ(Kernel::vtable.plan_paged_step, nullptr) << "a provider without plan_paged gets a NULL entry";
  const xq_kernel_vtable& vt = sdk::KernelAdapter<PlanningProvider>::vtable;
  ASSERT_NE(vt.plan_paged_step, nullptr);
  FakeHost fake;
  PlanningProvider p{sdk::Host(&fake.api)};
  const int32_t lens[2] = {5, 9};
  xq_paged_plan plan{};
  plan.struct_size = sizeof(plan);
  plan.rows = 2;
  plan.kv_lens = lens;
  plan.table_ld = 2, plan.block_size = 16, plan.heads = 32, plan.kv_heads = 8, plan.head_dim = 128;
  plan.kv_dtype = XQ_DTYPE_BF16;
  plan.taken = 7;  // an out field: reset before the provider sees it
  ASSERT_EQ(vt.plan_paged_step(&p, &plan), XQ_OK);
  EXPECT_EQ(p.planned_rows, 2);
  EXPECT_EQ(plan.taken, 1u);

  EXPECT_EQ(vt.plan_paged_step(&p, nullptr), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_NE(fake.last_message.find("plan_paged_step"), std::string::npos) << fake.last_message;
  auto refused = [&](auto change) {
    xq_paged_plan bad = plan;
    change(bad);
    p.planned_rows = -1;
    return vt.plan_paged_step(&p, &bad) == XQ_ERR_INVALID_ARGUMENT && p.planned_rows == -1;
  };
  EXPECT_TRUE(refused([](xq_paged_plan& b) { b.struct_size = 8; }));
  EXPECT_TRUE(refused([](xq_paged_plan& b) { b.kv_lens = nullptr; }));
  EXPECT_TRUE(refused([](xq_paged_plan& b) { b.rows = -1; }));
  EXPECT_TRUE(refused([](xq_paged_plan& b) { b.kv_heads = 0; }));
  EXPECT_TRUE(refused([](xq_paged_plan& b) { b.heads = -32, b.kv_heads = -8; }));
  // rows = 0 (no plan for this step) needs nothing else.
  xq_paged_plan none{};
  none.struct_size = sizeof(none);
  ASSERT_EQ(vt.plan_paged_step(&p, &none), XQ_OK);
  EXPECT_EQ(p.planned_rows, 0);
  EXPECT_EQ(none.taken, 0u);

  // A step with prefill rows: its sequences' rows and keys (the appended fields).
  const int32_t seq_rows[2] = {300, 1}, seq_lens[2] = {500, 9};
  xq_paged_plan mixed = plan;
  mixed.rows = 0, mixed.kv_lens = nullptr;
  mixed.seqs = 2, mixed.seq_rows = seq_rows, mixed.seq_kv_lens = seq_lens;
  ASSERT_EQ(vt.plan_paged_step(&p, &mixed), XQ_OK);
  EXPECT_EQ(p.planned_seqs, 2);
  EXPECT_EQ(mixed.taken, 1u);
  auto refused_mixed = [&](auto change) {
    xq_paged_plan bad = mixed;
    change(bad);
    p.planned_seqs = -1;
    return vt.plan_paged_step(&p, &bad) == XQ_ERR_INVALID_ARGUMENT && p.planned_seqs == -1;
  };
  EXPECT_TRUE(refused_mixed([](xq_paged_plan& b) { b.seqs = -1; }));
  EXPECT_TRUE(refused_mixed([](xq_paged_plan& b) { b.seq_rows = nullptr; }));
  EXPECT_TRUE(refused_mixed([](xq_paged_plan& b) { b.seq_kv_lens = nullptr; }));
  EXPECT_TRUE(refused_mixed([&](xq_paged_plan& b) { b.rows = 2, b.kv_lens = lens; }));  // one kind of step or the other
  EXPECT_TRUE(refused_mixed([](xq_paged_plan& b) { b.table_ld = 0; }));
  const int32_t fewer_keys[2] = {299, 9}, no_rows[2] = {0, 1};
  EXPECT_TRUE(refused_mixed([&](xq_paged_plan& b) { b.seq_kv_lens = fewer_keys; }));
  EXPECT_TRUE(refused_mixed([&](xq_paged_plan& b) { b.seq_rows = no_rows; }));
  EXPECT_NE(fake.last_message.find("sequence 0"), std::string::npos) << fake.last_message;

  // A caller built before the seqs fields (struct_size 72): the provider sees them zeroed, whatever
  // lies past the caller's struct.
  xq_paged_plan older = mixed;
  older.struct_size = offsetof(xq_paged_plan, seqs);
  older.rows = 2, older.kv_lens = lens;
  ASSERT_EQ(vt.plan_paged_step(&p, &older), XQ_OK);
  EXPECT_EQ(p.planned_rows, 2);
  EXPECT_EQ(p.planned_seqs, 0);
  EXPECT_EQ(older.taken, 1u);

  // A provider that leaves `taken` alone answers 0, whatever the caller's struct held.
  p.declines = true;
  xq_paged_plan again = plan;
  again.taken = 1;
  ASSERT_EQ(vt.plan_paged_step(&p, &again), XQ_OK);
  EXPECT_EQ(again.taken, 0u);
}

TEST(SdkKernelAdapter, ForwardsToTheProviderAndMapsFailures) {
  FakeHost fake;
  FakeProvider p{sdk::Host(&fake.api)};
  const xq_kernel_vtable& vt = Kernel::vtable;
  EXPECT_EQ(vt.struct_size, sizeof(xq_kernel_vtable));
  const char* why = nullptr;
  EXPECT_EQ(vt.score(&p, &why), 5u);
  EXPECT_STREQ(why, "fake");

  void* mem = nullptr;
  ASSERT_EQ(vt.alloc(&p, 16, &mem), XQ_OK);
  EXPECT_NE(mem, nullptr);
  vt.free(&p, mem);
  EXPECT_EQ(fake.frees, 1);

  EXPECT_EQ(vt.download(&p, mem, mem, 4), XQ_ERR_INTERNAL);
  EXPECT_EQ(fake.last_message, "download failed");

  xq_op op = sdk::make_op(XQ_OP_MATMUL);
  EXPECT_EQ(vt.supports_op(&p, &op), 1u);
  op.type = XQ_OP_ROPE;
  EXPECT_EQ(vt.supports_op(&p, &op), 0u);
  p.throw_in_supports = true;
  EXPECT_EQ(vt.supports_op(&p, &op), 0u) << "a throwing supports is a 'no', never an escape";

  p.throw_in_run = true;
  EXPECT_EQ(vt.run_op(&p, &op), XQ_ERR_DEVICE);
  EXPECT_EQ(fake.last_message, "kernel launch failed");
}

TEST(SdkKernelAdapter, RefusesNullArgumentsBeforeTheProviderSeesThem) {
  FakeHost fake;
  FakeProvider p{sdk::Host(&fake.api)};
  const xq_kernel_vtable& vt = Kernel::vtable;
  EXPECT_EQ(vt.alloc(&p, 16, nullptr), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(vt.run_op(&p, nullptr), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(vt.supports_op(&p, nullptr), 0u);
  EXPECT_EQ(vt.upload(&p, nullptr, nullptr, 8), XQ_ERR_INVALID_ARGUMENT);
  xq_qweight* w = nullptr;
  EXPECT_EQ(vt.qweight_prepare(&p, nullptr, &w), XQ_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(vt.score(nullptr, nullptr), 0u);
}

TEST(SdkKernelAdapter, QweightLifecycle) {
  FakeHost fake;
  FakeProvider p{sdk::Host(&fake.api)};
  const xq_kernel_vtable& vt = Kernel::vtable;
  xq_quant_tensor q = sdk::make_struct<xq_quant_tensor>();
  xq_qweight* w = nullptr;
  ASSERT_EQ(vt.qweight_prepare(&p, &q, &w), XQ_OK);
  EXPECT_STREQ(vt.qweight_layout(&p, w), "fake-layout");
  vt.qweight_release(&p, w);
  vt.qweight_release(&p, nullptr);  // accepted, not forwarded
  EXPECT_EQ(p.released, 1);
}

// ---- a loader and a format whose quantized reads allocate, then fail ----

namespace {

struct HalfReader {
  // Allocates codes and scales, then finds the tensor malformed.
  static void read(const sdk::Host& host, xq_quant_tensor& q) {
    q.codes = host.alloc<int8_t>(64);
    q.scales = host.alloc<float>(4);
    throw sdk::Error(XQ_ERR_MALFORMED, "scales truncated");
  }
};

struct FakeLoader : sdk::PluginBase {
  using PluginBase::PluginBase;
  struct Model : sdk::ModelBase {
    using ModelBase::ModelBase;
    void config(const sdk::KvWriter&) {}
    uint64_t tensor_count() { return 1; }
    void tensor_info(uint64_t, xq_tensor_info&) {}
    void read(uint64_t, xq_dtype, void*, uint64_t) {}
    void raw(uint64_t, xq_tensor_view&) {}
    void read_quantized(uint64_t, xq_quant_tensor& q) { HalfReader::read(host, q); }
  };
  uint32_t probe(const std::string&) { return 1; }
  std::unique_ptr<Model> open(const std::string&) { return std::make_unique<Model>(host); }
};

struct FakeFormat : sdk::PluginBase {
  using PluginBase::PluginBase;
  struct Writer : sdk::WriterBase {
    using WriterBase::WriterBase;
    void add_dense(const char*, const xq_tensor_view&) {}
    void add_quantized(const char*, const xq_quant_tensor&) {}
    void finish() {}
    void abort() noexcept {}
  };
  std::unique_ptr<Writer> open_writer(const xq_writer_options&) { return std::make_unique<Writer>(host); }
  uint32_t detect(const sdk::KvReader&) { return 0; }
  void read_module(const sdk::KvReader&, const xq_tensor_source&, const char*, xq_quant_tensor& q) {
    HalfReader::read(host, q);
  }
};

}  // namespace

TEST(SdkLoaderAdapter, AFailedQuantizedReadFreesWhatItAllocatedAndLeavesTheOutputUntouched) {
  FakeHost fake;
  FakeLoader::Model model{sdk::Host(&fake.api)};
  xq_quant_tensor out = sdk::make_struct<xq_quant_tensor>();
  EXPECT_EQ(sdk::LoaderAdapter<FakeLoader>::vtable.read_quantized(&model, 0, &out), XQ_ERR_MALFORMED);
  EXPECT_EQ(fake.allocs, 2);
  EXPECT_EQ(fake.frees, 2) << "the adapter owns the buffers until the call succeeds";
  EXPECT_EQ(out.codes, nullptr);
  EXPECT_EQ(fake.last_message, "scales truncated");
}

TEST(SdkFormatAdapter, AFailedModuleReadFreesWhatItAllocated) {
  FakeHost fake;
  FakeFormat format{sdk::Host(&fake.api)};
  xq_tensor_source src = sdk::make_struct<xq_tensor_source>();
  xq_quant_tensor out = sdk::make_struct<xq_quant_tensor>();
  EXPECT_EQ(sdk::FormatAdapter<FakeFormat>::vtable.read_module(&format, nullptr, &src, "m", &out),
            XQ_ERR_MALFORMED);
  EXPECT_EQ(fake.frees, fake.allocs);
  EXPECT_EQ(out.scales, nullptr);
}
