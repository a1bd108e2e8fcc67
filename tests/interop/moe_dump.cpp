// moe_dump.cpp: runs a checkpoint through the engine (cpu provider) on one
// token sequence and prints, as JSON on stdout, the logits of every token
// and, for every Mixture-of-Experts layer, the experts each token was
// routed to, so moe_interop.py can compare both with transformers' forward.
//
//   xquant_moe_dump MODEL_DIR TOKEN_ID[,TOKEN_ID...]
//
// {"logits": [[vocab floats] per token], "routing": {"<layer>": [[top_k ids] per token]},
//  "quantized_linears": N}
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/model.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace xquant;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: xquant_moe_dump MODEL_DIR TOKEN_ID[,TOKEN_ID...]\n");
    return 2;
  }
  try {
    RuntimeOptions ro;
    ro.log_level = XQ_LOG_WARN;
    Runtime rt(ro);
    // The checkpoint's own tables (a quantized one would hold them as Q8_0
    // blocks by default): the logits are compared with transformers' on the
    // same stored weights. XQUANT_TABLES still overrides.
    ModelOptions mo;
    mo.tables = TableForm::kAsStored;
    // Float activations in the cpu provider's INT4 decode GEMV too (its
    // default rounds them to int8 per 32 columns; docs/engine.md).
    setenv("XQUANT_CPU_GEMV", "f32", /*overwrite=*/0);
    auto model = Model::open(rt, argv[1], mo);
    std::vector<int32_t> ids;
    std::stringstream ss(argv[2]);
    for (std::string item; std::getline(ss, item, ',');) ids.push_back(static_cast<int32_t>(std::stol(item)));
    const Architecture& a = model->arch();
    const auto n = static_cast<int64_t>(ids.size());
    KvCache cache(a, n);
    std::vector<float> x(static_cast<size_t>(n * a.hidden));
    model->embed(ids.data(), n, x.data());
    nlohmann::json routing = nlohmann::json::object();
    for (int l = 0; l < a.n_layers; ++l) {
      std::vector<float> h;
      auto tap = [&](int group, const float* in, int64_t rows, int64_t cols) {
        if (group == LayerDesc::kMlpIn) h.assign(in, in + rows * cols);
      };
      model->layer_forward(l, x.data(), n, {SequenceSpan{0, n, 0, cache.k(l), cache.v(l)}}, tap);
      if (!a.layers[static_cast<size_t>(l)].moe) continue;
      const MoeRouting r = model->moe_routing(l, h.data(), n);
      nlohmann::json rows = nlohmann::json::array();
      for (int64_t t = 0; t < n; ++t)
        rows.push_back(std::vector<int32_t>(r.expert.begin() + t * r.top_k, r.expert.begin() + (t + 1) * r.top_k));
      routing[std::to_string(l)] = rows;
    }
    std::vector<float> logits(static_cast<size_t>(n * a.vocab));
    model->logits_from_hidden(x.data(), n, logits.data());
    nlohmann::json out;
    out["logits"] = nlohmann::json::array();
    for (int64_t t = 0; t < n; ++t)
      out["logits"].push_back(std::vector<float>(logits.begin() + t * a.vocab, logits.begin() + (t + 1) * a.vocab));
    out["routing"] = routing;
    out["quantized_linears"] = model->quantized_linears() + model->dequantized_linears();
    std::cout << out.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xquant_moe_dump: %s\n", e.what());
    return 1;
  }
}
