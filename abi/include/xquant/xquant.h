/* xquant.h: the embedding API. A small C surface that other languages bind
 * to (the Python package is the first proof): create a runtime, load
 * plugins, run pipelines, open a model to evaluate or generate, read the last
 * error. Separate from the plugin ABI (xq_abi.h): embedders never see
 * vtables.
 *
 * Every function returning xq_status records a message on failure, readable
 * with xq_last_error() on the same thread until the next failing call.
 */
#ifndef XQUANT_XQUANT_H
#define XQUANT_XQUANT_H

#include "xq_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XQ_API marks what libxquant exports (as ggml.h's GGML_API does):
 * XQ_SHARED is defined for the shared library and everything linking it
 * (the xquant::xquant target carries it), XQ_BUILD only while libxquant
 * itself compiles; its other symbols are hidden. Without XQ_SHARED (the
 * static core) the declarations are plain. */
#ifdef XQ_SHARED
#if defined(_WIN32) && !defined(__MINGW32__)
#ifdef XQ_BUILD
#define XQ_API __declspec(dllexport) extern
#else
#define XQ_API __declspec(dllimport) extern
#endif
#else
#define XQ_API __attribute__((visibility("default"))) extern
#endif
#else
#define XQ_API extern
#endif

typedef struct xq_runtime xq_runtime;
typedef struct xq_model xq_model;

typedef struct xq_runtime_options {
  uint32_t struct_size;
  xq_log_level log_level; /* default XQ_LOG_INFO */
  uint32_t num_threads;   /* 0 = hardware concurrency */
  uint32_t reserved;
  /* ':'-separated extra plugin directories, searched after the built-in
   * ones and XQUANT_PLUGIN_PATH; may be NULL. */
  const char* plugin_path;
} xq_runtime_options;

XQ_API const char* xq_version(void);
/* Thread-local message of the last failure on this thread ("" if none). */
XQ_API const char* xq_last_error(void);
/* A static, lower-case name of `status` ("ok", "not found", ...; "unknown
 * status" for a value outside xq_status), for messages that format a code. */
XQ_API const char* xq_status_string(xq_status status);

/* `options` may be NULL (defaults). Plugins are discovered and loaded here. */
XQ_API xq_status xq_runtime_create(const xq_runtime_options* options, xq_runtime** out);
XQ_API void xq_runtime_destroy(xq_runtime* runtime); /* accepts NULL */
/* Loads the plugins of `dir` (one more directory) into the runtime. */
XQ_API xq_status xq_runtime_load_plugins(xq_runtime* runtime, const char* dir);
/* Number of loaded plugins and a one-line JSON description of each. */
XQ_API uint32_t xq_runtime_plugin_count(const xq_runtime* runtime);
XQ_API const char* xq_runtime_plugin_json(const xq_runtime* runtime, uint32_t index);

/* Runs a pipeline. Relative paths in a string pipeline resolve against
 * `base_dir` (NULL = the current directory). */
XQ_API xq_status xq_run_pipeline_file(xq_runtime* runtime, const char* path);
XQ_API xq_status xq_run_pipeline_string(xq_runtime* runtime, const char* yaml, const char* base_dir);

/* Models (the inference engine). xq_model_open: on the `cpu` provider. */
XQ_API xq_status xq_model_open(xq_runtime* runtime, const char* path, xq_model** out);

/* What xq_model_open_ex takes besides the path. Zero it, set struct_size to
 * sizeof(xq_model_options); fields left NULL/0 keep their defaults, and a
 * caller built against an older, shorter struct gets the defaults of the
 * fields appended since. */
typedef struct xq_model_options {
  uint32_t struct_size;
  uint32_t reserved;
  /* Kernel provider plugin to run on ("cpu", "cuda"); NULL or "" = "cpu". A
   * device provider keeps weights, activations and the KV cache in its
   * memory; one that cannot run here is refused with its reason. */
  const char* provider;
  /* A checkpoint whose vocabulary the model uses when its own has none
   * (the CLI's --tokenizer); NULL = the model's own. */
  const char* tokenizer_from;
  /* Dense weights on a device provider: "auto" (NULL, the default: as
   * stored, BF16 for a BF16 checkpoint), "bf16" or "f32". */
  const char* device_weights;
  /* Bytes of the provider's memory the weights may take; 0 = no limit
   * beyond a device's free memory. A model whose layers need more is
   * refused after its first layer (XQ_ERR_OUT_OF_MEMORY), nothing kept. */
  uint64_t weight_memory_limit;
} xq_model_options;

/* `options` may be NULL (the defaults above). */
XQ_API xq_status xq_model_open_ex(xq_runtime* runtime, const char* path, const xq_model_options* options,
                                  xq_model** out);
XQ_API void xq_model_close(xq_model* model); /* accepts NULL */
/* Perplexity of a text file with the protocol of docs/engine.md: ctx-token
 * windows (0 = 512), max_tokens 0 = all. Any out pointer may be NULL. */
XQ_API xq_status xq_model_perplexity(xq_model* model, const char* text_path, uint32_t ctx,
                                     uint64_t max_tokens, double* out_perplexity,
                                     double* out_mean_nll, uint64_t* out_tokens_scored);
/* Generates up to n_tokens after `prompt`; temperature 0 = greedy. The text
 * is returned in *out_text, released with xq_string_free. */
XQ_API xq_status xq_model_generate(xq_model* model, const char* prompt, uint32_t n_tokens,
                                   float temperature, uint64_t seed, char** out_text);
XQ_API void xq_string_free(char* text);

#ifdef __cplusplus
}
#endif

#endif /* XQUANT_XQUANT_H */
