// algo_dump.cpp: writes the inputs and outputs of our gptq and smoothquant
// plugins (called through the runtime's registry, as the pipeline does) as
// raw little-endian files, so llmcompressor_crosscheck.py can run
// llm-compressor on exactly the same W / Hessian / activation statistics and
// compare codes, scales and smoothing factors.
//
//   xquant_algo_dump OUT_DIR [--rows 256] [--cols 512] [--tokens 2048] [--seed 1]
//
// OUT_DIR/manifest.json lists every case with its parameters and files:
//   gptq_<case>/  W.f32 [rows*cols], XtX.f32 [cols*cols] (H before 2/N),
//                 codes.i8, scales.f32, zp.i8 (asymmetric), gidx.i32 (act-order,
//                 non-static groups), meta: bits/sym/strategy/group_size/...
//   sq_<alpha>/   Wa.f32, Wb.f32 (two balance layers), absmax.f32, s.f32 (ours)
#include "core/kv.hpp"
#include "core/linalg.hpp"
#include "core/memory.hpp"
#include "core/runtime.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

template <class T>
void write_raw(const fs::path& p, const T* data, size_t n) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

struct Case {
  std::string name;
  uint32_t bits;
  bool sym;
  xq_strategy gran;
  int64_t group_size;
  bool act_order;
  bool static_groups;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [--rows N] [--cols N] [--tokens N] [--seed N]\n", argv[0]);
    return 2;
  }
  const fs::path out_dir = argv[1];
  int64_t rows = 256, cols = 512, tokens = 2048;
  unsigned seed = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--rows") rows = std::stoll(argv[i + 1]);
    else if (a == "--cols") cols = std::stoll(argv[i + 1]);
    else if (a == "--tokens") tokens = std::stoll(argv[i + 1]);
    else if (a == "--seed") seed = static_cast<unsigned>(std::stoul(argv[i + 1]));
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    fs::create_directories(out_dir);
    xquant::RuntimeOptions ro;
    ro.threads = 2;
    ro.log_level = XQ_LOG_WARN;
    xquant::Runtime rt(ro);
    auto& gptq = rt.plugins().require(XQ_PLUGIN_ALGORITHM, "gptq");
    auto& sq = rt.plugins().require(XQ_PLUGIN_ALGORITHM, "smoothquant");

    // Activations: correlated (random mixing of neighbours) with outlier channels.
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(tokens * cols));
    for (auto& v : x) v = nd(rng);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t j = cols - 1; j > 0; --j) x[t * cols + j] += 0.5f * x[t * cols + j - 1];
    for (int64_t j = 0; j < cols; j += 37)
      for (int64_t t = 0; t < tokens; ++t) x[t * cols + j] *= 20.0f;
    std::vector<float> xtx(static_cast<size_t>(cols * cols));
    xquant::linalg::ssyrk(cols, tokens, 1.0f, x.data(), cols, 0.0f, xtx.data(), cols);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    std::normal_distribution<float> wd(0.0f, 0.02f);
    for (auto& v : w) v = wd(rng);

    nlohmann::json manifest;
    manifest["rows"] = rows;
    manifest["cols"] = cols;
    manifest["tokens"] = tokens;
    const std::vector<Case> cases = {
        {"channel_w4_sym", 4, true, XQ_STRATEGY_CHANNEL, cols, false, false},
        {"channel_w8_sym", 8, true, XQ_STRATEGY_CHANNEL, cols, false, false},
        {"g128_w4_asym_static", 4, false, XQ_STRATEGY_GROUP, 128, false, true},
        {"g128_w4_sym_static", 4, true, XQ_STRATEGY_GROUP, 128, false, true},
        {"g128_w4_asym_actorder_static", 4, false, XQ_STRATEGY_GROUP, 128, true, true},
        {"g128_w4_asym_dynamic", 4, false, XQ_STRATEGY_GROUP, 128, false, false},
        {"g128_w4_sym_actorder_dynamic", 4, true, XQ_STRATEGY_GROUP, 128, true, false},
    };
    for (const Case& c : cases) {
      std::vector<float> wc = w;
      auto st = xquant::sdk::make_struct<xq_linear_stats>();
      st.cols = cols;
      st.tokens = static_cast<uint64_t>(tokens);
      st.hessian = xtx.data();
      auto in = xquant::sdk::make_struct<xq_linear_input>();
      in.name = "crosscheck.fc";
      in.weight = xquant::sdk::f32_view(wc, {rows, cols});
      in.stats = &st;
      in.scheme = xquant::sdk::make_struct<xq_quant_scheme>();
      in.scheme.bits = c.bits;
      in.scheme.symmetric = c.sym ? 1 : 0;
      in.scheme.strategy = c.gran;
      in.scheme.group_size = c.group_size;
      in.scheme.scale_dtype = XQ_DTYPE_F32;
      auto g = xquant::sdk::make_struct<xq_layer_group>();
      g.name = "crosscheck";
      g.n_linears = 1;
      g.linears = &in;
      g.prev_op = xquant::sdk::empty_view();
      g.role = "linear";
      xq_kv params;
      params.set("act_order", xquant::KvValue::boolean(c.act_order));
      params.set("static_groups", xquant::KvValue::boolean(c.static_groups));
      params.set("damp", xquant::KvValue::number(0.01));
      params.set("block_size", xquant::KvValue::integer(128));
      auto o = xquant::sdk::make_struct<xq_linear_output>();
      o.quant = xquant::sdk::make_struct<xq_quant_tensor>();
      xq_status s = gptq.algorithm().quantize(gptq.state, &params, &g, &o);
      xquant::QuantTensor q = xquant::adopt_quant_tensor(o.quant);
      if (s != XQ_OK) throw std::runtime_error("gptq failed on case " + c.name);
      const fs::path d = out_dir / ("gptq_" + c.name);
      fs::create_directories(d);
      write_raw(d / "W.f32", w.data(), w.size());
      write_raw(d / "XtX.f32", xtx.data(), xtx.size());
      write_raw(d / "codes.i8", q->codes, static_cast<size_t>(rows * cols));
      write_raw(d / "scales.f32", q->scales, static_cast<size_t>(rows * q->n_groups));
      if (q->zero_points) write_raw(d / "zp.i8", q->zero_points, static_cast<size_t>(rows * q->n_groups));
      if (q->g_idx) write_raw(d / "gidx.i32", q->g_idx, static_cast<size_t>(cols));
      manifest["gptq"].push_back({{"name", c.name},
                                  {"dir", d.filename().string()},
                                  {"bits", c.bits},
                                  {"symmetric", c.sym},
                                  {"strategy", c.gran == XQ_STRATEGY_GROUP ? "group" : "channel"},
                                  {"group_size", c.group_size},
                                  {"act_order", c.act_order},
                                  {"static_groups", c.static_groups},
                                  {"n_groups", q->n_groups},
                                  {"has_gidx", q->g_idx != nullptr},
                                  {"rel_error", o.rel_error}});
    }

    // SmoothQuant: two balance layers sharing the input, per-column absmax of x.
    std::vector<float> absmax(static_cast<size_t>(cols), 0.0f);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t j = 0; j < cols; ++j) absmax[j] = std::max(absmax[j], std::fabs(x[t * cols + j]));
    const int64_t ra = rows, rb = rows / 2;
    std::vector<float> wa(w.begin(), w.begin() + ra * cols), wb(static_cast<size_t>(rb * cols));
    for (auto& v : wb) v = wd(rng) * 3.0f;
    for (double alpha : {0.5, 0.8}) {
      std::vector<float> a2 = wa, b2 = wb, norm(static_cast<size_t>(cols), 1.0f);
      auto st = xquant::sdk::make_struct<xq_linear_stats>();
      st.cols = cols;
      st.tokens = static_cast<uint64_t>(tokens);
      st.absmax = absmax.data();
      xq_linear_input ins[2]{};
      std::vector<float>* ws[2] = {&a2, &b2};
      const int64_t rs[2] = {ra, rb};
      const char* names[2] = {"crosscheck.q_proj", "crosscheck.k_proj"};
      for (int i = 0; i < 2; ++i) {
        ins[i] = xquant::sdk::make_struct<xq_linear_input>();
        ins[i].name = names[i];
        ins[i].weight = xquant::sdk::f32_view(*ws[i], {rs[i], cols});
        ins[i].stats = &st;
        ins[i].scheme = xquant::sdk::make_struct<xq_quant_scheme>();
        ins[i].scheme.bits = 8;
        ins[i].scheme.symmetric = 1;
        ins[i].scheme.strategy = XQ_STRATEGY_CHANNEL;
        ins[i].scheme.group_size = cols;
      }
      auto g = xquant::sdk::make_struct<xq_layer_group>();
      g.name = "crosscheck.attn_in";
      g.n_linears = 2;
      g.linears = ins;
      g.prev_op = xquant::sdk::f32_view(norm, {cols});
      g.role = "attn_qkv";
      xq_kv params;
      params.set("alpha", xquant::KvValue::number(alpha));
      params.set("quantize", xquant::KvValue::boolean(false));
      xq_linear_output o[2]{};
      for (auto& oo : o) {
        oo = xquant::sdk::make_struct<xq_linear_output>();
        oo.quant = xquant::sdk::make_struct<xq_quant_tensor>();
      }
      if (sq.algorithm().quantize(sq.state, &params, &g, o) != XQ_OK) throw std::runtime_error("smoothquant failed");
      // s_j = W'[:, j] / W[:, j] exactly as applied; read it from the norm (1 / s).
      std::vector<float> s(static_cast<size_t>(cols));
      for (int64_t j = 0; j < cols; ++j) s[j] = 1.0f / norm[j];
      char tag[32];
      std::snprintf(tag, sizeof(tag), "sq_%.2f", alpha);
      const fs::path d = out_dir / tag;
      fs::create_directories(d);
      write_raw(d / "Wa.f32", wa.data(), wa.size());
      write_raw(d / "Wb.f32", wb.data(), wb.size());
      write_raw(d / "absmax.f32", absmax.data(), absmax.size());
      write_raw(d / "s.f32", s.data(), s.size());
      write_raw(d / "Wa_smoothed.f32", a2.data(), a2.size());
      manifest["smoothquant"].push_back(
          {{"alpha", alpha}, {"dir", d.filename().string()}, {"rows_a", ra}, {"rows_b", rb}});
    }
    std::ofstream(out_dir / "manifest.json") << manifest.dump(2);
    std::printf("wrote %s\n", (out_dir / "manifest.json").c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "algo_dump: %s\n", e.what());
    return 1;
  }
}
