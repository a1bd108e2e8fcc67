// test_xq.cpp: the native `xq` container (plugins/xq).
//
//  * A small file written through the real writer plugin reads back through
//    the real loader byte for byte (canonical tensors, dense tensors, the
//    cpu provider's packed segment equal to what the provider packs).
//  * Malformed files: truncated at many offsets, a bad header, a manifest the
//    FlatBuffers verifier refuses, and manifests that lie (offsets outside
//    the data or unaligned, sizes that do not match shape x dtype, wrong
//    dtypes, duplicated names, empty layout names, a cpu segment with the
//    wrong bytes): each open fails with an xquant::Error naming the field.
//  * stories260K quantized (rtn sym and gptq act-order asym) to
//    compressed-tensors and converted to xq, and quantized straight to xq by
//    the pipeline: the same canonical tensors byte for byte, the same dense
//    tensors, the same logits and perplexity, and on the cpu provider the xq
//    copy loads with zero bytes repacked (the compressed-tensors copy repacks).
#include "test_runtime.hpp"
#include "checkpoint/checkpoint.hpp"
#include "core/error.hpp"
#include "engine/model.hpp"
#include "pipeline/output_writer.hpp"

#include "stories_checks.hpp"
#include "subprocess.hpp"
#include "test_files.hpp"

#include <xquant/sdk/cpu_layout.hpp>
#include <xquant/sdk/half.hpp>
#include <xquant/xq_generated.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <utility>

namespace fs = std::filesystem;
using namespace xquant;
namespace xf = xquant::xqfile;

namespace {

const fs::path& kModel = test::kStoriesHf;
const fs::path& kVocab = test::kStoriesGguf;
const fs::path& kText = test::kTinyStoriesText;

Runtime& runtime() { return test::quiet_runtime(); }

test::ProcessResult run_cli(std::vector<std::string> args) { return test::run_xquant(std::move(args)); }

// ---- a small file through the real writer ------------------------------------

test::Canon random_canon(int64_t rows, int64_t cols, uint32_t bits, int64_t group, bool sym, bool act_order,
                         uint32_t seed) {
  std::mt19937 rng(seed);
  test::Canon c;
  xq_quant_tensor& q = c.q;
  q.bits = bits;
  q.symmetric = sym ? 1 : 0;
  q.strategy = group ? XQ_STRATEGY_GROUP : XQ_STRATEGY_CHANNEL;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group ? group : cols;
  q.n_groups = group ? (cols + group - 1) / group : 1;
  q.scale_dtype = XQ_DTYPE_F16;
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  c.codes.resize(static_cast<size_t>(rows * cols));
  for (auto& v : c.codes) v = static_cast<int8_t>(code(rng));
  c.scales.resize(static_cast<size_t>(rows * q.n_groups));
  for (auto& s : c.scales) s = sdk::round_to_f16(scale(rng));
  if (!sym) {
    c.zps.resize(c.scales.size());
    for (auto& z : c.zps) z = static_cast<int8_t>(code(rng));
  }
  if (act_order) {
    c.gidx.resize(static_cast<size_t>(cols));
    std::uniform_int_distribution<int> g(0, static_cast<int>(q.n_groups) - 1);
    for (auto& v : c.gidx) v = g(rng);
  }
  c.bind();
  return c;
}

struct Tiny {
  test::Canon q4 = random_canon(4, 64, 4, 32, false, true, 1);  // asym act-order
  test::Canon q8 = random_canon(3, 40, 8, 0, true, false, 2);   // sym per channel, ragged blocks
  std::vector<float> norm = {1, 2, 3, 4, 5, 6, 7, 8};

  void write(const fs::path& out) {
    Kv config, params;
    OutputWriter w(runtime().plugins().require(XQ_PLUGIN_FORMAT, "xq"), out, "", config, params, {});
    w.add_dense("model.norm.weight", sdk::tensor_view(XQ_DTYPE_F32, {8}, norm.data()));
    w.add_quantized("model.layers.0.self_attn.q_proj", q4.q);
    w.add_quantized("model.layers.0.mlp.down_proj", q8.q);
    w.finish();
  }
};

void expect_same_quant(const xq_quant_tensor& x, const xq_quant_tensor& y, const std::string& m) {
  ASSERT_EQ(x.bits, y.bits) << m;
  ASSERT_EQ(x.symmetric, y.symmetric) << m;
  ASSERT_EQ(x.strategy, y.strategy) << m;
  ASSERT_EQ(x.rows, y.rows) << m;
  ASSERT_EQ(x.cols, y.cols) << m;
  ASSERT_EQ(x.group_size, y.group_size) << m;
  ASSERT_EQ(x.n_groups, y.n_groups) << m;
  ASSERT_EQ(x.scale_dtype, y.scale_dtype) << m;
  ASSERT_EQ(x.act_scheme, y.act_scheme) << m;
  const size_t ns = static_cast<size_t>(x.strategy == XQ_STRATEGY_TENSOR ? 1 : x.rows * x.n_groups);
  EXPECT_EQ(std::memcmp(x.codes, y.codes, static_cast<size_t>(x.rows * x.cols)), 0) << m;
  EXPECT_EQ(std::memcmp(x.scales, y.scales, ns * 4), 0) << m;
  ASSERT_EQ(x.zero_points == nullptr, y.zero_points == nullptr) << m;
  if (x.zero_points) {
    EXPECT_EQ(std::memcmp(x.zero_points, y.zero_points, ns), 0) << m;
  }
  ASSERT_EQ(x.g_idx == nullptr, y.g_idx == nullptr) << m;
  if (x.g_idx) {
    EXPECT_EQ(std::memcmp(x.g_idx, y.g_idx, static_cast<size_t>(x.cols) * 4), 0) << m;
  }
}

TEST(XqContainer, SmallFileReadsBackByteForByte) {
  test::TempDir dir("xq-small");
  Tiny t;
  t.write(dir / "tiny.xq");
  ASSERT_TRUE(fs::exists(dir / "tiny.xq"));
  for (const auto& e : fs::directory_iterator(dir.path())) EXPECT_EQ(e.path().filename(), "tiny.xq");  // no temp left
  const std::string bytes = test::read_file(dir / "tiny.xq");
  // tests/fuzz/corpus/xq/tiny is this file (regenerate with this variable set).
  if (const char* seed = std::getenv("XQUANT_WRITE_XQ_SEED")) test::write_file(seed, bytes);
  uint32_t alignment;
  std::memcpy(&alignment, bytes.data() + 12, 4);
  EXPECT_EQ(alignment, 64u);

  auto cp = Checkpoint::open(runtime(), dir / "tiny.xq");
  EXPECT_EQ(cp->loader().name(), "xq");
  ASSERT_EQ(cp->tensors().size(), 3u);
  const TensorEntry& norm = cp->require("model.norm.weight");
  EXPECT_EQ(cp->read_f32(norm), t.norm);
  for (auto [name, canon] : {std::pair{"model.layers.0.self_attn.q_proj", &t.q4}, {"model.layers.0.mlp.down_proj", &t.q8}}) {
    const TensorEntry& te = cp->require(std::string(name) + ".weight");
    EXPECT_TRUE(te.has_quantized);
    EXPECT_EQ(te.dtype, XQ_DTYPE_BLOCKS);
    QuantTensor q = cp->read_quantized(te);
    expect_same_quant(canon->q, q.get(), name);
    // The stored cpu segment is what the cpu provider's packing makes.
    auto desc = sdk::make_struct<xq_quant_tensor>();
    auto view = sdk::make_struct<xq_tensor_view>();
    ASSERT_TRUE(cp->read_packed(te, sdk::cpu_layout::kName, desc, view)) << name;
    EXPECT_EQ(uint64_t{reinterpret_cast<uintptr_t>(view.data) % 64}, 0u);
    const auto packed = sdk::cpu_layout::serialize(sdk::cpu_layout::pack(canon->q));
    ASSERT_EQ(view.nbytes, packed.size()) << name;
    EXPECT_EQ(std::memcmp(view.data, packed.data(), packed.size()), 0) << name;
    EXPECT_FALSE(cp->read_packed(te, "cuda.w4a16.v1", desc, view));
  }
}

TEST(XqContainer, AnErrorOrAnAbortLeavesNothing) {
  test::TempDir dir("xq-abort");
  Tiny t;
  Kv config, params;
  LoadedPlugin& xq = runtime().plugins().require(XQ_PLUGIN_FORMAT, "xq");
  {
    // Destroyed unfinished (an error elsewhere, Ctrl-C): the writer aborts.
    OutputWriter w(xq, dir / "aborted.xq", "", config, params, {});
    w.add_dense("model.norm.weight", sdk::tensor_view(XQ_DTYPE_F32, {8}, t.norm.data()));
    w.add_quantized("model.layers.0.self_attn.q_proj", t.q4.q);
  }
  {
    OutputWriter w(xq, dir / "refused.xq", "", config, params, {});
    w.add_quantized("model.layers.0.self_attn.q_proj", t.q4.q);
    t.q4.codes[3] = 9;  // outside the 4-bit range
    EXPECT_THROW(w.add_quantized("model.layers.0.self_attn.k_proj", t.q4.q), Error);
    EXPECT_THROW(w.add_quantized("model.layers.0.self_attn.q_proj", t.q8.q), Error);  // a name twice
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// ---- malformed files ----------------------------------------------------------

// An .xq file as data: the header and data area of a real file, and its
// manifest as editable fields, re-emitted after a test changes them.
struct Spec {
  struct Seg {
    std::string layout;
    uint64_t offset, size;
  };
  struct Tensor {
    std::string name;
    int dtype;
    std::vector<int64_t> shape;
    bool quant;
    uint32_t bits;
    bool symmetric;
    int strategy;
    int64_t rows, cols, group_size, n_groups;
    int scale_dtype;
    bool has_g_idx;
    std::vector<Seg> segs;
  };
  std::string data;  // header + data area
  std::vector<Tensor> tensors;

  static Spec from(const std::string& file) {
    Spec s;
    uint64_t off, size;
    std::memcpy(&off, file.data() + 16, 8);
    std::memcpy(&size, file.data() + 24, 8);
    s.data = file.substr(0, off);
    const auto* m = xf::GetManifest(file.data() + off);
    for (const auto* t : *m->tensors()) {
      Tensor r{t->name()->str(), static_cast<int>(t->dtype()), {t->shape()->begin(), t->shape()->end()},
               t->quant() != nullptr, 0, false, 0, 0, 0, 0, 0, 0, false, {}};
      if (const auto* q = t->quant()) {
        r.bits = q->bits();
        r.symmetric = q->symmetric();
        r.strategy = static_cast<int>(q->strategy());
        r.rows = q->rows();
        r.cols = q->cols();
        r.group_size = q->group_size();
        r.n_groups = q->n_groups();
        r.scale_dtype = static_cast<int>(q->scale_dtype());
        r.has_g_idx = q->has_g_idx();
      }
      for (const auto* sg : *t->segments()) r.segs.push_back({sg->layout()->str(), sg->range()->offset(), sg->range()->size()});
      s.tensors.push_back(r);
    }
    return s;
  }

  std::string emit() const {
    flatbuffers::FlatBufferBuilder b;
    std::vector<flatbuffers::Offset<xf::Tensor>> ts;
    for (const auto& t : tensors) {
      std::vector<flatbuffers::Offset<xf::Segment>> segs;
      for (const auto& s : t.segs) {
        const xf::Range r(s.offset, s.size);
        segs.push_back(xf::CreateSegment(b, b.CreateString(s.layout), &r));
      }
      flatbuffers::Offset<xf::QuantDesc> q;
      if (t.quant)
        q = xf::CreateQuantDesc(b, t.bits, t.symmetric, static_cast<xf::Strategy>(t.strategy), t.rows, t.cols,
                                t.group_size, t.n_groups, static_cast<xf::DType>(t.scale_dtype), t.has_g_idx);
      auto name = b.CreateString(t.name);
      auto shape = b.CreateVector(t.shape);
      auto sv = b.CreateVector(segs);
      ts.push_back(xf::CreateTensor(b, name, static_cast<xf::DType>(t.dtype), shape, q, sv));
    }
    auto tv = b.CreateVector(ts);
    b.Finish(xf::CreateManifest(b, 1, 0, 0, 0, 0, 0, tv), xf::ManifestIdentifier());
    std::string out = data;
    const uint64_t off = out.size(), size = b.GetSize();
    out.append(reinterpret_cast<const char*>(b.GetBufferPointer()), size);
    std::memcpy(out.data() + 16, &off, 8);
    std::memcpy(out.data() + 24, &size, 8);
    return out;
  }
};

class XqMalformed : public ::testing::Test {
 protected:
  void SetUp() override {
    Tiny t;
    t.write(dir_ / "good.xq");
    good_ = test::read_file(dir_ / "good.xq");
  }
  // The open error for `bytes`, opened with the xq loader; "" when it opened.
  std::string open_error(const std::string& bytes) {
    test::write_file(dir_ / "bad.xq", bytes);
    try {
      auto cp = Checkpoint::open(runtime(), dir_ / "bad.xq", "xq");
      for (const auto& t : cp->tensors())
        if (t.has_quantized) (void)cp->read_quantized(t);
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  }
  void expect_refused(const std::string& bytes, const std::string& field) {
    const std::string err = open_error(bytes);
    EXPECT_NE(err.find(field), std::string::npos) << "expected an error naming '" << field << "', got: '" << err << "'";
  }
  void expect_spec_refused(const std::function<void(Spec&)>& edit, const std::string& field) {
    Spec s = Spec::from(good_);
    edit(s);
    expect_refused(s.emit(), field);
  }
  test::TempDir dir_{"xq-malformed"};
  std::string good_;
};

TEST_F(XqMalformed, TheUnchangedFileAndItsReEmittedManifestOpen) {
  EXPECT_EQ(open_error(good_), "");
  EXPECT_EQ(open_error(Spec::from(good_).emit()), "");
}

TEST_F(XqMalformed, TruncatedAnywhere) {
  std::vector<size_t> cuts = {0, 1, 7, 8, 63, 64, 65, good_.size() - 1, good_.size() - 8};
  for (size_t i = 1; i < 64; ++i) cuts.push_back(good_.size() * i / 64);
  for (size_t cut : cuts) {
    SCOPED_TRACE("truncated at " + std::to_string(cut));
    const std::string err = open_error(good_.substr(0, cut));
    EXPECT_NE(err.find("xq: "), std::string::npos) << err;
    EXPECT_TRUE(err.find("header") != std::string::npos || err.find("manifest") != std::string::npos) << err;
  }
}

TEST_F(XqMalformed, BadHeader) {
  auto patched = [&](size_t at, const void* v, size_t n) {
    std::string b = good_;
    std::memcpy(b.data() + at, v, n);
    return b;
  };
  expect_refused(patched(0, "XQUANX", 6), "header.magic");
  const uint32_t v2 = 2, a100 = 100;
  expect_refused(patched(8, &v2, 4), "header.version");
  expect_refused(patched(12, &a100, 4), "header.alignment");
  const uint64_t inside = 8, huge = uint64_t{1} << 62;
  expect_refused(patched(16, &inside, 8), "header.manifest_offset");
  expect_refused(patched(24, &huge, 8), "header.manifest_size");
  // A manifest offset that lands on tensor data: the verifier refuses it.
  const uint64_t data_at = 64;
  expect_refused(patched(16, &data_at, 8), "FlatBuffers verifier");
  // The manifest's identifier and its root offset.
  uint64_t off;
  std::memcpy(&off, good_.data() + 16, 8);
  expect_refused(patched(off + 4, "ABCD", 4), "FlatBuffers verifier");
  const uint32_t wild = 0x7fffffff;
  expect_refused(patched(off, &wild, 4), "FlatBuffers verifier");
}

TEST_F(XqMalformed, LyingManifests) {
  // Segments outside the data area, unaligned, or overlapping the manifest.
  expect_spec_refused([](Spec& s) { s.tensors[0].segs[0].offset += 8; }, "tensors[0] 'model.norm.weight'.segments[0].range.offset");
  expect_spec_refused([](Spec& s) { s.tensors[1].segs[0].offset = uint64_t{1} << 40; }, "outside the data area");
  expect_spec_refused([](Spec& s) { s.tensors[1].segs[0].offset = 0; }, "outside the data area");
  expect_spec_refused([](Spec& s) { s.tensors[2].segs[0].size = ~uint64_t{0}; }, "outside the data area");
  // Sizes that do not match shape x dtype / the description.
  expect_spec_refused([](Spec& s) { s.tensors[0].shape = {9}; }, "segments[canonical].size");
  expect_spec_refused([](Spec& s) { s.tensors[0].dtype = static_cast<int>(xf::DType::F16); }, "segments[canonical].size");
  expect_spec_refused([](Spec& s) { s.tensors[1].segs[0].size -= 1; }, "segments[canonical].size");
  expect_spec_refused([](Spec& s) { s.tensors[1].n_groups = 3; }, ".quant.n_groups");
  expect_spec_refused([](Spec& s) { s.tensors[1].bits = 9; }, ".quant.bits");
  expect_spec_refused([](Spec& s) { s.tensors[1].rows = 5; }, ".quant.rows/cols");
  expect_spec_refused([](Spec& s) { s.tensors[1].shape = {-4, 64}; }, ".shape");
  // Wrong dtypes.
  expect_spec_refused([](Spec& s) { s.tensors[1].dtype = static_cast<int>(xf::DType::F32); }, "'model.layers.0.self_attn.q_proj.weight'.dtype");
  expect_spec_refused([](Spec& s) { s.tensors[0].dtype = 99; }, "tensors[0] 'model.norm.weight'.dtype");
  expect_spec_refused([](Spec& s) { s.tensors[1].scale_dtype = static_cast<int>(xf::DType::I8); }, ".quant.scale_dtype");
  expect_spec_refused([](Spec& s) { s.tensors[2].strategy = 7; }, ".quant.strategy");
  // Names and layouts.
  expect_spec_refused([](Spec& s) { s.tensors[2].name = s.tensors[1].name; }, "tensors[2] 'model.layers.0.self_attn.q_proj.weight'.name");
  expect_spec_refused([](Spec& s) { s.tensors[0].name = ""; }, "tensors[0] ''.name");
  expect_spec_refused([](Spec& s) { s.tensors[1].segs[1].layout = ""; }, "segments[1].layout");
  // (An unknown layout name is ignored, not refused: test_xq_cuda_layout.cpp.)
  expect_spec_refused([](Spec& s) { s.tensors[1].segs[1].layout = "canonical"; }, "'canonical' appears twice");
  expect_spec_refused([](Spec& s) { s.tensors[1].segs.erase(s.tensors[1].segs.begin()); }, "no 'canonical' segment");
  // A cpu segment over other bytes: the layout's own header check.
  expect_spec_refused([](Spec& s) { s.tensors[1].segs[1] = {"cpu.int-blocks.v1", s.tensors[1].segs[0].offset, s.tensors[1].segs[0].size}; },
                      "segments[cpu.int-blocks.v1]");
  // The cpu segments of the two quantized tensors swapped.
  expect_spec_refused([](Spec& s) { std::swap(s.tensors[1].segs[1], s.tensors[2].segs[1]); }, "differs from the tensor's description");
}

// ---- stories260K: xq against compressed-tensors ---------------------------------

class XqModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir("xq-model");
    for (const auto& [name, alg, sym, params] :
         std::vector<std::tuple<std::string, std::string, bool, std::string>>{
             {"rtn-sym", "rtn", true, ""}, {"gptq-asym", "gptq", false, "params: {act_order: true}"}})
      for (const std::string format : {"compressed-tensors", "xq"}) {
        const std::string out = name + (format == "xq" ? "-run.xq" : "-ct");
        std::string yaml = "model: {path: " + kModel.string() +
                           "}\nquantize:\n  - targets: [\"re:.*self_attn\\\\..*_proj$\"]\n    algorithm: " + alg + "\n" +
                           (params.empty() ? "" : "    " + params + "\n") +
                           "    weights: {bits: 4, symmetric: " + (sym ? "true" : "false") + ", group_size: 32}\n" +
                           "ignore: [\"re:.*mlp\\\\..*\", lm_head]\n" + "calibration: {text: " + kText.string() +
                           ", samples: 4, seq_len: 64, tokenizer: " + kVocab.string() + "}\n" +
                           "output: {format: " + format + ", path: " + (*dir_ / out).string() + "}\n";
        test::write_file(*dir_ / (out + ".yaml"), yaml);
        auto r = run_cli({"run", (*dir_ / (out + ".yaml")).string()});
        ASSERT_EQ(r.exit_code, 0) << r.err;
      }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static fs::path path(const std::string& name) { return *dir_ / name; }
  static void convert(const std::string& in, const std::string& out, const std::string& format) {
    auto r = run_cli({"convert", "--model", path(in).string(), "--out", path(out).string(), "--format", format, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["exact"], 20) << r.out;
  }
  static test::TempDir* dir_;
};
test::TempDir* XqModel::dir_ = nullptr;

// Every quantized Linear's canonical tensor and every dense tensor equal.
void expect_same_checkpoint(const fs::path& ct_path, const fs::path& xq_path) {
  auto ct = Checkpoint::open(runtime(), ct_path), xq = Checkpoint::open(runtime(), xq_path);
  int quantized = 0, dense = 0;
  for (const auto& t : xq->tensors()) {
    if (t.has_quantized) {
      const std::string module = t.name.substr(0, t.name.size() - 7);  // ".weight"
      auto a = ct->read_module(module);
      ASSERT_TRUE(a) << module;
      QuantTensor b = xq->read_quantized(t);
      expect_same_quant(a->get(), b.get(), module);
      ++quantized;
    } else {
      const TensorEntry& c = ct->require(t.name);
      ASSERT_EQ(c.dtype, t.dtype) << t.name;
      ASSERT_EQ(c.nbytes, t.nbytes) << t.name;
      EXPECT_EQ(std::memcmp(ct->raw(c).data, xq->raw(t).data, t.nbytes), 0) << t.name;
      ++dense;
    }
  }
  EXPECT_EQ(quantized, 20);
  EXPECT_GT(dense, 0);
}

TEST_F(XqModel, ConvertedAndDirectXqEqualCompressedTensorsAndLoadWithoutRepacking) {
  for (const std::string name : {"rtn-sym", "gptq-asym"}) {
    SCOPED_TRACE(name);
    convert(name + "-ct", name + "-conv.xq", "xq");
    expect_same_checkpoint(path(name + "-ct"), path(name + "-conv.xq"));
    expect_same_checkpoint(path(name + "-ct"), path(name + "-run.xq"));
    // The pipeline travels inside; convert has none, so stores none.
    EXPECT_EQ(Checkpoint::open(runtime(), path(name + "-run.xq"))->config().get_string("xq.recipe_yaml", ""),
              test::read_file(path(name + "-run.xq.yaml")));
    EXPECT_EQ(Checkpoint::open(runtime(), path(name + "-conv.xq"))->config().find("xq.recipe_yaml"), nullptr);

    auto ct = Model::open(runtime(), path(name + "-ct"));
    auto xq = Model::open(runtime(), path(name + "-run.xq"));
    EXPECT_EQ(xq->load_stats().repacked_bytes, 0u);
    EXPECT_EQ(xq->load_stats().stored_linears, 20);
    EXPECT_GT(xq->load_stats().stored_bytes, 0u);
    EXPECT_EQ(ct->load_stats().stored_bytes, 0u);
    EXPECT_EQ(ct->load_stats().repacked_linears, 20);
    EXPECT_EQ(ct->load_stats().repacked_bytes, xq->load_stats().stored_bytes);
    // The weights are the same bytes (above). On host providers a
    // compressed-tensors checkpoint is stacked at load into one q|k|v and one
    // gate|up weight (runtime/engine/foreign_blocks.cpp), while an xq file's
    // stored Linears are taken as they are, unstacked; the float sums then
    // run in different SGEMM column blocks, so the logits agree to float
    // rounding, not bit for bit.
    const auto la = test::stories_prompt_logits(*ct), lb = test::stories_prompt_logits(*xq);
    ASSERT_EQ(la.size(), lb.size());
    float amax = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < la.size(); ++i) {
      amax = std::max(amax, std::fabs(la[i]));
      diff = std::max(diff, std::fabs(la[i] - lb[i]));
    }
    EXPECT_LE(diff, 1e-5f * std::max(1.0f, amax));
    const double pa = test::stories_cli_perplexity(path(name + "-ct")), pb = test::stories_cli_perplexity(path(name + "-run.xq"));
    EXPECT_GT(pa, 1.0);
    EXPECT_NEAR(pa, pb, 1e-6 * pa);

    // And back to compressed-tensors: the same canonical tensors again.
    convert(name + "-run.xq", name + "-back-ct", "compressed-tensors");
    expect_same_checkpoint(path(name + "-back-ct"), path(name + "-run.xq"));
  }
}

TEST_F(XqModel, CarriesTheTokenizerOfAGgufSource) {
  // Quantized from the GGUF (which carries the vocabulary): the xq file runs
  // without --tokenizer, and loads with nothing repacked.
  auto r = run_cli({"quantize", "--model", kVocab.string(), "--out", path("from-gguf.xq").string(), "--format", "xq",
                    "--algorithm", "rtn", "--bits", "4", "--group-size", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli({"generate", "--model", path("from-gguf.xq").string(), "--prompt", "Once upon a time", "-n", "8"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(": 0 bytes repacked at load (0 Linears)"), std::string::npos) << r.err;
  EXPECT_FALSE(r.out.empty());
  r = run_cli({"inspect", path("from-gguf.xq").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("xq container v1: segments aligned to 64 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[canonical, cpu.int-blocks.v1, cuda.w4a16-mma.v1]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("with a cuda layout"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recipe present"), std::string::npos) << r.out;
}

TEST_F(XqModel, QuantizingAnXqFileIsRefusedBeforeAnyWork) {
  // An xq file is already quantized: quantizing it again would dequantize and
  // round a second time, silently. Refused like a compressed-tensors source.
  const fs::path out = path("requantized-xq");
  auto r = run_cli({"quantize", "--model", path("rtn-sym-run.xq").string(), "--out", out.string(), "--algorithm", "rtn",
                    "--bits", "4", "--group-size", "32"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("is already a quantized xq checkpoint"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
