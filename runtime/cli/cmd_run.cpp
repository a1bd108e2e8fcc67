// cmd_run.cpp: `xquant run PIPELINE.yaml`: validate the whole pipeline,
// then run it.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/run_parsed_pipeline.hpp"
#include "pipeline/pipeline.hpp"

#include <cstdio>

namespace xquant::cli {

int cmd_run(const RuntimeOptions& options, int argc, char** argv) {
  Args args("run", "Run a pipeline: load -> quantize -> write, as the YAML file says (see docs/pipeline.md).\n"
                   "Relative paths in the file resolve against the file's own folder.",
            {{"json", "", "print the report as JSON"},
             {"check", "", "validate the pipeline (and its plugins' params) without running it"},
             {"resume", "", "continue a killed calibrated run from its last finished layer (docs/pipeline.md)"}},
            {"PIPELINE.yaml"});
  if (!args.parse(argc, argv)) return 0;
  Pipeline pipeline = parse_pipeline_file(args.positionals()[0]);
  if (args.flag("check")) {
    Runtime runtime(options);
    for (const auto& dir : pipeline.plugin_paths) runtime.plugins().load_dir(dir);
    validate_with_plugins(pipeline, runtime);
    std::printf("%s: ok\n", args.positionals()[0].c_str());
    return 0;
  }
  pipeline.resume = args.flag("resume");
  return run_parsed_pipeline(options, pipeline, args.flag("json"));
}

}  // namespace xquant::cli
