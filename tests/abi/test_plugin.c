/* test_plugin.c: one source for the ABI-negotiation test plugins. Written
 * in plain C99 against abi/ alone, which also proves the headers need no
 * C++. Each variant is selected by a compile definition (CMakeLists.txt). */
#include <xquant/xq_algorithm.h>

#include <string.h>

static uint32_t needs(void* state, const xq_kv* params) {
  (void)state;
  (void)params;
  return 0;
}

static xq_status quantize(void* state, const xq_kv* params, xq_layer_group* group, xq_linear_output* outs) {
  (void)state;
  (void)params;
  (void)group;
  (void)outs;
  return XQ_ERR_UNSUPPORTED;
}

#ifdef VTABLE_TOO_SMALL
static const xq_algorithm_vtable vtable = {8, 0, needs, quantize};
#else
static const xq_algorithm_vtable vtable = {sizeof(xq_algorithm_vtable), 0, needs, quantize};
#endif

static const xq_host_api* g_host; /* plain pointer: constant-initialised */

static xq_status init(const xq_host_api* host, uint32_t abi, void** state) {
  g_host = host;
  *state = NULL;
#if defined(FAIL_INIT_NAMED)
  (void)abi;
  /* A message that names its plugin already (the cuda provider's do). */
  return host->set_error(host->ctx, XQ_ERR_DEVICE, PLUGIN_NAME ": the widget driver is missing");
#elif defined(FAIL_INIT)
  (void)abi;
  return host->set_error(host->ctx, XQ_ERR_DEVICE, "the widget driver is missing");
#else
  host->log(host->ctx, XQ_LOG_DEBUG, abi == XQ_ABI_VERSION ? "init at the host's version" : "init at an older version");
  return XQ_OK;
#endif
}

static const char* const caps[] = {"test:cap", NULL};
static const xq_param_spec params[] = {{"alpha", XQ_VALUE_FLOAT, "0.5", "a test parameter"},
                                       {NULL, XQ_VALUE_NONE, NULL, NULL}};

static const xq_plugin_descriptor descriptor = {sizeof(xq_plugin_descriptor),
                                                PLUGIN_ABI_MIN,
                                                PLUGIN_ABI_MAX,
                                                XQ_PLUGIN_ALGORITHM,
                                                PLUGIN_NAME,
                                                "0.1.0",
                                                "ABI negotiation test plugin",
                                                caps,
                                                params,
                                                init,
                                                NULL,
                                                &vtable};

#ifndef NO_ENTRY
XQ_PLUGIN_EXPORT const xq_plugin_descriptor* xquant_plugin_entry(uint32_t host_min, uint32_t host_max) {
  (void)host_min;
#ifdef DECLINE
  (void)host_max;
  (void)descriptor;
  return NULL;
#else
  (void)host_max;
  return &descriptor;
#endif
}
#else
XQ_PLUGIN_EXPORT int some_other_symbol(void) { return (int)descriptor.struct_size + (g_host ? 1 : 0); }
#endif
