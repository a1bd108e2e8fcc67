// sdk_consumer.cpp: a C++ embedder of an installed libxquant, linked through
// xquant::xquant only. Runs the pipeline named on the command line with the
// installed plugins and prints one line: the version, the plugin count and
// "ok", or the runtime's error message on stderr and exit status 1.
#include <xquant/xquant.h>

#include <cstdio>

// xquant::xquant carries XQ_SHARED, so XQ_API declares imports from libxquant.
#ifndef XQ_SHARED
#error "xquant::xquant did not define XQ_SHARED"
#endif

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <pipeline.yaml>\n", argv[0]);
    return 2;
  }
  xq_runtime* runtime = nullptr;
  if (xq_runtime_create(nullptr, &runtime) != XQ_OK) {
    std::fprintf(stderr, "sdk_consumer: %s\n", xq_last_error());
    return 1;
  }
  const xq_status status = xq_run_pipeline_file(runtime, argv[1]);
  if (status == XQ_OK)
    std::printf("xquant %s: %u plugins, ok\n", xq_version(), xq_runtime_plugin_count(runtime));
  else
    std::fprintf(stderr, "sdk_consumer: %s\n", xq_last_error());
  xq_runtime_destroy(runtime);
  return status == XQ_OK ? 0 : 1;
}
