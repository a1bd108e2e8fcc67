// commands.hpp: the xquant subcommands. Each lives in its own cmd_*.cpp and
// is listed once in main.cpp's table.
#pragma once

#include "core/runtime.hpp"

namespace xquant::cli {

// Common options already removed from argv; argv[0] is the first argument
// after the subcommand name. Returns the process exit code.
using CommandFn = int (*)(const RuntimeOptions& options, int argc, char** argv);

struct Command {
  const char* name;
  const char* summary;
  CommandFn run;
};

int cmd_run(const RuntimeOptions&, int, char**);
int cmd_quantize(const RuntimeOptions&, int, char**);
int cmd_inspect(const RuntimeOptions&, int, char**);
int cmd_plugins(const RuntimeOptions&, int, char**);
int cmd_tokenize(const RuntimeOptions&, int, char**);
int cmd_eval(const RuntimeOptions&, int, char**);
int cmd_generate(const RuntimeOptions&, int, char**);
int cmd_convert(const RuntimeOptions&, int, char**);
int cmd_bench(const RuntimeOptions&, int, char**);

}  // namespace xquant::cli
