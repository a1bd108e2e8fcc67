/* xq_abi.h: the base of the xquant plugin ABI (pure C99).
 *
 * Everything a plugin and the host agree on before any kind-specific work:
 * versions, status codes, dtypes, typed key/values, the host API table that
 * the host passes INTO a plugin, and the plugin descriptor returned by the one
 * exported entry symbol. docs/abi.md states the rules; the short form:
 *
 *  - One exported symbol per library: XQ_PLUGIN_ENTRY_SYMBOL.
 *  - Versions are negotiated both ways: the host passes its [min,max] to the
 *    entry; the plugin's descriptor states its own [abi_min, abi_max]; the
 *    host picks min(host_max, plugin_max) and rejects the plugin when that is
 *    below max(host_min, plugin_min) or the majors differ.
 *  - Every struct that crosses the boundary starts with uint32_t struct_size
 *    and only ever grows at the end; readers check struct_size before touching
 *    a field added later (XQ_HAS_FIELD).
 *  - Errors are an xq_status plus a message recorded with host->set_error;
 *    no C++ exception and no abort() crosses or stays inside the boundary.
 *    A failed call leaves its outputs untouched.
 *  - Ownership is spelled out on every call: views are borrowed for the call,
 *    outputs are allocated with host->alloc and released by the host.
 */
#ifndef XQUANT_XQ_ABI_H
#define XQUANT_XQ_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ---------------------------------------------------------- */

#define XQ_MAKE_ABI_VERSION(major, minor) ((uint32_t)(((major) << 16) | (minor)))
#define XQ_ABI_MAJOR(v) ((uint32_t)(v) >> 16)
#define XQ_ABI_MINOR(v) ((uint32_t)(v)&0xFFFFu)

/* The version these headers describe. Minor bumps only append fields. */
#define XQ_ABI_VERSION_1_0 XQ_MAKE_ABI_VERSION(1, 0)
#define XQ_ABI_VERSION XQ_ABI_VERSION_1_0

/* True when a struct of the reported size contains FIELD in full. */
#define XQ_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

#if defined(_WIN32)
#define XQ_PLUGIN_EXPORT __declspec(dllexport)
#else
#define XQ_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* ---- status ------------------------------------------------------------ */

typedef enum xq_status {
  XQ_OK = 0,
  XQ_ERR_INVALID_ARGUMENT = 1, /* a caller passed something the callee can't take */
  XQ_ERR_NOT_FOUND = 2,        /* a key, tensor, file or plugin does not exist */
  XQ_ERR_TYPE_MISMATCH = 3,    /* a value exists but has another type */
  XQ_ERR_UNSUPPORTED = 4,      /* valid request this implementation does not do */
  XQ_ERR_MALFORMED = 5,        /* a file or input violates its format */
  XQ_ERR_IO = 6,               /* the OS refused a read, write, map or rename */
  XQ_ERR_OUT_OF_MEMORY = 7,
  XQ_ERR_ABI_MISMATCH = 8,     /* no common ABI version */
  XQ_ERR_CANCELLED = 9,        /* the user asked to stop (through progress) */
  XQ_ERR_DEVICE = 10,          /* an accelerator call failed */
  XQ_ERR_INTERNAL = 11         /* a bug: an invariant did not hold */
} xq_status;

/* ---- element types ------------------------------------------------------ */

typedef enum xq_dtype {
  XQ_DTYPE_INVALID = 0,
  XQ_DTYPE_F32 = 1,
  XQ_DTYPE_F16 = 2,
  XQ_DTYPE_BF16 = 3,
  XQ_DTYPE_F64 = 4,
  XQ_DTYPE_I8 = 5,
  XQ_DTYPE_U8 = 6,
  XQ_DTYPE_I16 = 7,
  XQ_DTYPE_U16 = 8,
  XQ_DTYPE_I32 = 9,
  XQ_DTYPE_U32 = 10,
  XQ_DTYPE_I64 = 11,
  XQ_DTYPE_U64 = 12,
  XQ_DTYPE_BOOL = 13,
  XQ_DTYPE_F8_E4M3 = 14,
  XQ_DTYPE_F8_E5M2 = 15,
  /* Opaque block-quantized bytes (e.g. a GGUF Q4_K tensor); the loader's
   * xq_tensor_info.storage_type_name says which. Never a compute dtype. */
  XQ_DTYPE_BLOCKS = 16
} xq_dtype;

#define XQ_MAX_DIMS 8

/* ---- logging ----------------------------------------------------------- */

typedef enum xq_log_level {
  XQ_LOG_TRACE = 0,
  XQ_LOG_DEBUG = 1,
  XQ_LOG_INFO = 2,
  XQ_LOG_WARN = 3,
  XQ_LOG_ERROR = 4
} xq_log_level;

/* ---- typed key/values -------------------------------------------------- */

/* A host-owned dictionary of typed values. Used for plugin parameters (built
 * by the host from the pipeline YAML and validated against the plugin's
 * xq_param_spec list) and for model configuration (filled by loaders with
 * the canonical keys of docs/abi.md). Plugins never parse YAML. */
typedef struct xq_kv xq_kv;

typedef enum xq_value_type {
  XQ_VALUE_NONE = 0,
  XQ_VALUE_BOOL = 1,
  XQ_VALUE_INT = 2,
  XQ_VALUE_FLOAT = 3,
  XQ_VALUE_STRING = 4,
  XQ_VALUE_INT_ARRAY = 5,
  XQ_VALUE_FLOAT_ARRAY = 6,
  XQ_VALUE_STRING_ARRAY = 7
} xq_value_type;

/* A borrowed view of one value: only the member(s) named by `type` are
 * meaningful. Views returned by kv_get stay valid until that key is set
 * again or the dictionary is destroyed. kv_set copies what it is given. */
typedef struct xq_value {
  xq_value_type type;
  uint32_t reserved;
  int64_t i;                   /* BOOL (0/1), INT */
  double f;                    /* FLOAT */
  const char* s;               /* STRING (UTF-8, NUL-terminated) */
  uint64_t count;              /* element count of the array kinds */
  const int64_t* ints;         /* INT_ARRAY */
  const double* floats;        /* FLOAT_ARRAY */
  const char* const* strings;  /* STRING_ARRAY */
} xq_value;

/* One parameter a plugin accepts. The host validates pipeline params against
 * the list before any heavy work (unknown keys are rejected with the nearest
 * valid name; wrong types are rejected) and fills in defaults, so a plugin
 * can read every declared key without checking for absence. */
typedef struct xq_param_spec {
  const char* name;          /* NULL terminates the list */
  xq_value_type type;
  const char* default_value; /* text parsed as `type`; NULL: no default (optional) */
  const char* help;
} xq_param_spec;

/* ---- the host API table -------------------------------------------------- */

typedef void (*xq_range_fn)(void* user, uint64_t begin, uint64_t end);

/* Passed into the plugin's init and valid until the process exits. Every
 * function takes `ctx` first. All functions are thread-safe. */
typedef struct xq_host_api {
  uint32_t struct_size;
  uint32_t abi_version; /* the version negotiated for this plugin */
  void* ctx;

  /* Logging; the host prefixes the plugin's name. */
  void (*log)(void* ctx, xq_log_level level, const char* message);

  /* Memory: 64-byte aligned, never NULL for size > 0 unless out of memory.
   * Blocks given to the host in an output struct are freed by the host. */
  void* (*alloc)(void* ctx, size_t nbytes);
  void (*free)(void* ctx, void* ptr);

  /* Records `message` as this thread's error for the current call and
   * returns `status`, so a plugin can write `return host->set_error(...)`. */
  xq_status (*set_error)(void* ctx, xq_status status, const char* message);

  /* Progress of a long step. Returns XQ_ERR_CANCELLED when the user asked to
   * stop; the plugin then returns that status. `total` 0 means unknown. */
  xq_status (*progress)(void* ctx, const char* task, uint64_t done, uint64_t total);

  /* Typed key/values (see xq_value). */
  xq_kv* (*kv_create)(void* ctx);
  void (*kv_destroy)(void* ctx, xq_kv* kv);
  xq_status (*kv_set)(void* ctx, xq_kv* kv, const char* key, const xq_value* value);
  /* XQ_ERR_NOT_FOUND when absent; `out` untouched then. */
  xq_status (*kv_get)(void* ctx, const xq_kv* kv, const char* key, xq_value* out);
  uint64_t (*kv_count)(void* ctx, const xq_kv* kv);
  const char* (*kv_key_at)(void* ctx, const xq_kv* kv, uint64_t index);

  /* Compute services. parallel_for splits [0,n) into chunks of at least
   * `grain` items over the host's thread pool and returns when all are done.
   * `fn` must not throw or call back into parallel_for. */
  void (*parallel_for)(void* ctx, uint64_t n, uint64_t grain, xq_range_fn fn, void* user);
  uint32_t (*num_threads)(void* ctx);

  /* Dense F32 linear algebra on the host's compute device (a BLAS/LAPACK on
   * CPU), so algorithms (GPTQ, AWQ) do their heavy lifting where the host
   * chooses. All matrices row-major with leading dimensions in elements.
   * Invalid shapes return XQ_ERR_INVALID_ARGUMENT with a message. */
  /* C[m,n] = alpha * op(A) * op(B) + beta * C; op = transpose when trans_* != 0. */
  xq_status (*sgemm)(void* ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                     int64_t ldc);
  /* C[n,n] = alpha * A^T A + beta * C for A[k,n] (both triangles written):
   * Hessian accumulation X^T X. */
  xq_status (*ssyrk)(void* ctx, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta,
                     float* c, int64_t ldc);
  /* In place: A[n,n] symmetric positive definite -> its Cholesky factor,
   * upper (A = U^T U) when upper != 0, else lower (A = L L^T); the other
   * triangle is zeroed. XQ_ERR_INVALID_ARGUMENT (message names the failing
   * pivot) when A is not positive definite, A unchanged then. */
  xq_status (*spotrf)(void* ctx, int upper, int64_t n, float* a, int64_t lda);
  /* In place: the Cholesky factor (as spotrf left it) -> A^-1 (full symmetric). */
  xq_status (*spotri)(void* ctx, int upper, int64_t n, float* a, int64_t lda);
  /* B[m,n] <- op(T)^-1 B (left != 0) or B op(T)^-1 (left == 0) for a
   * triangular T (upper != 0: upper), op = transpose when trans != 0. */
  xq_status (*strsm)(void* ctx, int left, int upper, int trans, int64_t m, int64_t n, const float* t,
                     int64_t ldt, float* b, int64_t ldb);
} xq_host_api;

/* ---- the plugin descriptor -------------------------------------------- */

typedef enum xq_plugin_kind {
  XQ_PLUGIN_LOADER = 1,
  XQ_PLUGIN_ALGORITHM = 2,
  XQ_PLUGIN_FORMAT = 3,
  XQ_PLUGIN_KERNEL_PROVIDER = 4
} xq_plugin_kind;

/* Static data owned by the plugin (constant-initialised; no constructors).
 * Everything in it is readable without running any of the plugin's work:
 * `xquant plugins` lists it. */
typedef struct xq_plugin_descriptor {
  uint32_t struct_size;
  uint32_t abi_min; /* oldest host ABI this plugin can speak */
  uint32_t abi_max; /* newest */
  xq_plugin_kind kind;
  const char* name;        /* unique per kind, [a-z0-9_-]+ */
  const char* version;     /* the plugin's own version, semver */
  const char* description; /* one line */
  /* NULL-terminated list of capability strings, e.g. "layout:ct-int4",
   * "op:matmul", "bits:2-8"; may be NULL. */
  const char* const* capabilities;
  /* Parameters accepted from pipelines; terminated by name == NULL; may be NULL. */
  const xq_param_spec* params;

  /* Called once after negotiation with the host table and the chosen
   * version. On failure the plugin is skipped (the message is reported).
   * `*out_state` is passed to every vtable call. May be NULL (no state). */
  xq_status (*init)(const xq_host_api* host, uint32_t abi_version, void** out_state);
  /* Called at process exit before the host tears down; may be NULL. The
   * library itself is never unloaded. */
  void (*shutdown)(void* state);

  /* The kind's vtable: xq_loader_vtable, xq_algorithm_vtable,
   * xq_format_vtable or xq_kernel_vtable. */
  const void* vtable;
} xq_plugin_descriptor;

/* The one exported symbol. `host_abi_min/max` is the host's range so a
 * plugin can return a descriptor (and vtable) suited to it; NULL means "no
 * version in common" and the host reports the plugin as skipped. */
typedef const xq_plugin_descriptor* (*xq_plugin_entry_fn)(uint32_t host_abi_min,
                                                           uint32_t host_abi_max);
#define XQ_PLUGIN_ENTRY_SYMBOL "xquant_plugin_entry"

#ifdef __cplusplus
} /* extern "C" */
#endif

/* Offsets of shipped fields never move (x86-64/aarch64 LP64). */
#if defined(__cplusplus)
#define XQ_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define XQ_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
XQ_STATIC_ASSERT(offsetof(xq_value, i) == 8, "xq_value.i moved");
XQ_STATIC_ASSERT(offsetof(xq_value, strings) == 56, "xq_value.strings moved");
XQ_STATIC_ASSERT(sizeof(xq_value) == 64, "xq_value size changed");
XQ_STATIC_ASSERT(offsetof(xq_param_spec, help) == 24, "xq_param_spec.help moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, ctx) == 8, "xq_host_api.ctx moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, log) == 16, "xq_host_api.log moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, set_error) == 40, "xq_host_api.set_error moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, kv_create) == 56, "xq_host_api.kv_create moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, parallel_for) == 104, "xq_host_api.parallel_for moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, num_threads) == 112, "xq_host_api.num_threads moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, sgemm) == 120, "xq_host_api.sgemm moved");
XQ_STATIC_ASSERT(offsetof(xq_host_api, strsm) == 152, "xq_host_api.strsm moved");
XQ_STATIC_ASSERT(offsetof(xq_plugin_descriptor, name) == 16, "descriptor.name moved");
XQ_STATIC_ASSERT(offsetof(xq_plugin_descriptor, init) == 56, "descriptor.init moved");
XQ_STATIC_ASSERT(offsetof(xq_plugin_descriptor, vtable) == 72, "descriptor.vtable moved");
#endif

#endif /* XQUANT_XQ_ABI_H */
