/* embed_pipeline.c: a C program embedding xquant through xquant.h alone.
 *
 *   embed_pipeline PIPELINE.yaml     runs a pipeline file
 *   embed_pipeline --plugins         lists the plugins the runtime found
 *
 * Exit status 0 on success; on failure the runtime's message on stderr. */
#include <xquant/xquant.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PIPELINE.yaml | --plugins\n", argv[0]);
    return 2;
  }
  xq_runtime_options options;
  memset(&options, 0, sizeof options);
  options.struct_size = sizeof options;
  options.log_level = XQ_LOG_WARN;

  xq_runtime* runtime = NULL;
  if (xq_runtime_create(&options, &runtime) != XQ_OK) {
    fprintf(stderr, "xquant: %s\n", xq_last_error());
    return 1;
  }
  int rc = 0;
  if (strcmp(argv[1], "--plugins") == 0) {
    printf("xquant %s, %u plugins\n", xq_version(), xq_runtime_plugin_count(runtime));
    for (uint32_t i = 0; i < xq_runtime_plugin_count(runtime); ++i) printf("%s\n", xq_runtime_plugin_json(runtime, i));
  } else if (xq_run_pipeline_file(runtime, argv[1]) != XQ_OK) {
    fprintf(stderr, "xquant: %s\n", xq_last_error());
    rc = 1;
  } else {
    printf("pipeline %s done\n", argv[1]);
  }
  xq_runtime_destroy(runtime);
  return rc;
}
