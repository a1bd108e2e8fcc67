// engine_logits.cpp: greedy decoding of several prompts together through the
// engine's paged KV cache on any provider, keeping the logits of every step,
// so scripts/gpu-hf-compare.py can hold them against transformers' forward
// on the same checkpoint. All prompts go in one prefill step (chunked
// prefill of several sequences) and then decode together, one row each
// (the steps the cuda provider replays from CUDA graphs).
//
//   xquant_engine_logits MODEL_DIR PROVIDER PROMPTS_FILE STEPS OUT_PREFIX
//
// PROMPTS_FILE: one prompt per line, token ids separated by commas.
// Writes OUT_PREFIX.f32: float32 logits [prompt][step 0..STEPS][vocab]
// (step 0: after the prompt; step s: after the s-th generated token), and
// OUT_PREFIX.json: {"vocab", "steps", "tokens": [[STEPS+1 greedy ids] per
// prompt], "decode_graphs": {"recorded", "replayed", "refused"} or null}.
#include "core/error.hpp"
#include "core/runtime.hpp"
#include "engine/decode_graphs.hpp"
#include "engine/model.hpp"
#include "engine/paged_kv.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace xquant;

namespace {

std::vector<std::vector<int32_t>> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(XQ_ERR_IO, "cannot read the prompts file '{}'", path);
  std::vector<std::vector<int32_t>> prompts;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    std::vector<int32_t> ids;
    std::stringstream ss(line);
    for (std::string item; std::getline(ss, item, ',');) {
      try {
        ids.push_back(static_cast<int32_t>(std::stol(item)));
      } catch (const std::exception&) {
        fail(XQ_ERR_MALFORMED, "'{}' line {}: '{}' is not a token id", path, prompts.size() + 1, item);
      }
    }
    prompts.push_back(std::move(ids));
  }
  if (prompts.empty()) fail(XQ_ERR_MALFORMED, "'{}' holds no prompt", path);
  return prompts;
}

int32_t argmax(const float* row, int64_t n) { return static_cast<int32_t>(std::max_element(row, row + n) - row); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: xquant_engine_logits MODEL_DIR PROVIDER PROMPTS_FILE STEPS OUT_PREFIX\n");
    return 2;
  }
  try {
    RuntimeOptions ro;
    ro.log_level = XQ_LOG_WARN;
    Runtime rt(ro);
    ModelOptions mo;
    mo.provider = argv[2];
    // The checkpoint's own tables (a quantized one would hold them as Q8_0
    // blocks by default): these logits are compared with transformers' on the
    // same stored weights. XQUANT_TABLES still overrides.
    mo.tables = TableForm::kAsStored;
    // Float activations in the cpu provider's INT4 decode GEMV too (its
    // default rounds them to int8 per 32 columns, as llama.cpp's Q4_0 path;
    // docs/engine.md): these bounds compare float engines. An explicit
    // XQUANT_CPU_GEMV still overrides.
    setenv("XQUANT_CPU_GEMV", "f32", /*overwrite=*/0);
    auto model = Model::open(rt, argv[1], mo);
    const auto prompts = read_prompts(argv[3]);
    const int64_t steps = std::stol(argv[4]);
    const int64_t V = model->arch().vocab, P = static_cast<int64_t>(prompts.size());
    int64_t longest = 0;
    for (const auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
    // XQUANT_ENGINE_LOGITS_KV=bf16: BF16 pools (the cuda provider's prefill
    // path, scripts/gpu-prefill-check.sh); F32 otherwise.
    const char* kv_env = std::getenv("XQUANT_ENGINE_LOGITS_KV");
    const xq_dtype kv_t = kv_env && std::string(kv_env) == "bf16" ? XQ_DTYPE_BF16 : XQ_DTYPE_F32;
    PagedKvCache cache(*model, {16, P * ((longest + steps + 16) / 16 + 1), kv_t});
    std::vector<PagedSequence> seqs(static_cast<size_t>(P));
    std::vector<PagedInput> batch;
    for (int64_t s = 0; s < P; ++s)
      batch.push_back({&seqs[s], prompts[s].data(), static_cast<int64_t>(prompts[s].size())});
    // logits[prompt][step][vocab]
    std::vector<float> all(static_cast<size_t>(P * (steps + 1) * V));
    std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(P));
    std::vector<int32_t> last(static_cast<size_t>(P));
    for (int64_t step = 0; step <= steps; ++step) {
      const std::vector<float> lg = model->forward_paged(cache, batch);
      for (int64_t s = 0; s < P; ++s) {
        const float* row = lg.data() + s * V;
        std::copy(row, row + V, all.begin() + (s * (steps + 1) + step) * V);
        last[s] = argmax(row, V);
        tokens[s].push_back(last[s]);
      }
      batch.clear();
      for (int64_t s = 0; s < P; ++s) batch.push_back({&seqs[s], &last[s], 1});
    }
    const std::string prefix = argv[5];
    std::ofstream bin(prefix + ".f32", std::ios::binary);
    bin.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size() * sizeof(float)));
    if (!bin) fail(XQ_ERR_IO, "cannot write '{}.f32'", prefix);
    nlohmann::json j{{"vocab", V}, {"steps", steps}, {"tokens", tokens}, {"decode_graphs", nullptr}};
    if (const DecodeGraphs* g = model->decode_graphs())
      j["decode_graphs"] = {{"recorded", g->stats().recorded}, {"replayed", g->stats().replayed},
                            {"refused", g->stats().refused}};
    std::ofstream(prefix + ".json") << j.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xquant_engine_logits: %s\n", e.what());
    return 1;
  }
}
