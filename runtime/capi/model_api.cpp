// model_api.cpp: the model half of the embedding C API (xquant.h):
// xq_model_open/open_ex/close/perplexity/generate and xq_string_free, over the
// inference engine. Every call goes through capi::boundary, so failures are
// a status plus xq_last_error(), never an exception across the C boundary.
#include "capi/runtime_api.hpp"
#include "engine/device_weights.hpp"
#include "engine/evaluate.hpp"
#include "engine/model.hpp"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

struct xq_model {
  std::unique_ptr<xquant::Model> model;
};

using namespace xquant;

namespace {

// ModelOptions from the C struct: the fields its struct_size covers, the
// CLI's defaults for the rest (device weights as stored).
ModelOptions model_options(const xq_model_options* options) {
  ModelOptions mo;
  mo.device_weights = XQ_DTYPE_INVALID;  // as stored: `xquant generate --device-weights auto`
  if (!options) return mo;
  if (options->struct_size < offsetof(xq_model_options, provider) + sizeof(options->provider))
    fail(XQ_ERR_INVALID_ARGUMENT, "xq_model_options.struct_size is {}: set it to sizeof(xq_model_options)",
         options->struct_size);
  if (options->provider && *options->provider) mo.provider = options->provider;
  if (XQ_HAS_FIELD(options, xq_model_options, tokenizer_from) && options->tokenizer_from)
    mo.tokenizer_from = options->tokenizer_from;
  if (XQ_HAS_FIELD(options, xq_model_options, device_weights) && options->device_weights && *options->device_weights)
    mo.device_weights = device_weights_from_name(options->device_weights, "xq_model_options.device_weights");
  if (XQ_HAS_FIELD(options, xq_model_options, weight_memory_limit))
    mo.weight_memory_limit = options->weight_memory_limit;
  return mo;
}

// Both open calls: the arguments checked, *out NULL until the model is open
// (NULL options: the defaults, the `cpu` provider).
xq_status open_model(const char* fn, xq_runtime* runtime, const char* path, const xq_model_options* options,
                     xq_model** out) {
  return capi::boundary([&] {
    if (!runtime || !runtime->runtime || !path || !out)
      fail(XQ_ERR_INVALID_ARGUMENT, "{}: runtime, path and out must not be NULL", fn);
    *out = nullptr;
    auto m = std::make_unique<xq_model>();
    m->model = Model::open(*runtime->runtime, path, model_options(options));
    *out = m.release();
  });
}

}  // namespace

extern "C" {

XQ_API xq_status xq_model_open(xq_runtime* runtime, const char* path, xq_model** out) {
  return open_model("xq_model_open", runtime, path, nullptr, out);
}

XQ_API xq_status xq_model_open_ex(xq_runtime* runtime, const char* path, const xq_model_options* options,
                                  xq_model** out) {
  return open_model("xq_model_open_ex", runtime, path, options, out);
}

XQ_API void xq_model_close(xq_model* model) { delete model; }

XQ_API xq_status xq_model_perplexity(xq_model* model, const char* text_path, uint32_t ctx, uint64_t max_tokens,
                                     double* out_perplexity, double* out_mean_nll, uint64_t* out_tokens_scored) {
  return capi::boundary([&] {
    if (!model || !model->model || !text_path)
      fail(XQ_ERR_INVALID_ARGUMENT, "xq_model_perplexity: model and text_path must not be NULL");
    std::ifstream in(text_path, std::ios::binary);
    if (!in) fail(XQ_ERR_IO, "cannot read text file '{}'", text_path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto tokens = eval_tokens(*model->model, ss.str(), max_tokens);
    auto r = perplexity(*model->model, tokens, ctx == 0 ? 512 : static_cast<int64_t>(ctx));
    if (out_perplexity) *out_perplexity = r.perplexity;
    if (out_mean_nll) *out_mean_nll = r.mean_nll;
    if (out_tokens_scored) *out_tokens_scored = r.tokens_scored;
  });
}

XQ_API xq_status xq_model_generate(xq_model* model, const char* prompt, uint32_t n_tokens, float temperature,
                                   uint64_t seed, char** out_text) {
  return capi::boundary([&] {
    if (!model || !model->model || !out_text)
      fail(XQ_ERR_INVALID_ARGUMENT, "xq_model_generate: model and out_text must not be NULL");
    GenerateOptions o;
    o.n_tokens = n_tokens;
    o.temperature = temperature;
    o.seed = seed;
    auto r = generate(*model->model, prompt ? prompt : "", o);
    char* s = static_cast<char*>(std::malloc(r.text.size() + 1));
    if (!s) fail(XQ_ERR_OUT_OF_MEMORY, "xq_model_generate: out of memory");
    std::memcpy(s, r.text.c_str(), r.text.size() + 1);
    *out_text = s;
  });
}

XQ_API void xq_string_free(char* text) { std::free(text); }

}  // extern "C"
