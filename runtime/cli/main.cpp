// main.cpp: the xquant command line. Parses the options every subcommand
// shares (-v, -q, --threads, --plugin-path), dispatches, and turns errors
// into a message on stderr and a non-zero exit.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "core/cancel.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

#include <xquant/xq_abi.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

using namespace xquant;
using namespace xquant::cli;

namespace {

const Command kCommands[] = {
    {"run", "run a pipeline (YAML)", cmd_run},
    {"quantize", "quantize a model (shorthand that builds a pipeline)", cmd_quantize},
    {"inspect", "show a checkpoint's format, tensors and quantization config", cmd_inspect},
    {"plugins", "list loaded plugins (and skipped ones with the reason)", cmd_plugins},
    {"tokenize", "print the token ids of a text with a model's tokenizer", cmd_tokenize},
    {"eval", "perplexity of a text file with the inference engine", cmd_eval},
    {"generate", "generate text from a prompt with the inference engine", cmd_generate},
    {"convert", "rewrite a checkpoint in another format (awq, gptq, gguf, ...) without quantizing again", cmd_convert},
    {"bench", "offline serving throughput: models x concurrency x lengths (tok/s, TTFT, TPOT, memory, KV capacity)",
     cmd_bench},
};

// After Ctrl-C (or SIGTERM) the run unwound and removed what it had written:
// one line, and the shell's status for death by that signal (128 + signo).
int report_interrupted() {
  std::fprintf(stderr, "xquant: interrupted\n");
  return 128 + (cancel_signal() != 0 ? cancel_signal() : SIGINT);
}

void print_help() {
  std::printf("xquant %s: LLM quantization with plugins behind a stable C ABI\n\n", XQUANT_VERSION);
  std::printf("usage: xquant [-v|-q] [--threads N] [--plugin-path DIR] <command> [options]\n\ncommands:\n");
  for (const auto& c : kCommands) std::printf("  %-10s %s\n", c.name, c.summary);
  std::printf("\n'xquant <command> --help' describes each command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  install_cancel_handlers();
  RuntimeOptions options;
  std::vector<char*> rest;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-v" || a == "--verbose") {
        options.log_level = XQ_LOG_DEBUG;
      } else if (a == "-q" || a == "--quiet") {
        options.log_level = XQ_LOG_WARN;
      } else if (a == "--threads" || a == "--plugin-path") {
        if (i + 1 >= argc) throw UsageError(fmt::format("option '{}' needs a value", a));
        std::string v = argv[++i];
        if (a == "--threads") {
          try {
            int n = std::stoi(v);
            if (n < 0) throw std::invalid_argument("negative");
            options.threads = static_cast<unsigned>(n);
          } catch (const std::exception&) {
            throw UsageError(fmt::format("--threads expects a non-negative integer, got '{}'", v));
          }
        } else {
          std::error_code ec;
          if (!std::filesystem::is_directory(v, ec))
            throw UsageError(fmt::format("--plugin-path '{}': no such folder", v));
          options.plugin_dirs.emplace_back(v);
        }
      } else {
        rest.push_back(argv[i]);
      }
    }
    set_log_level(options.log_level);
    if (rest.empty() || std::strcmp(rest[0], "--help") == 0 || std::strcmp(rest[0], "-h") == 0 ||
        std::strcmp(rest[0], "help") == 0) {
      print_help();
      return rest.empty() ? 2 : 0;
    }
    if (std::strcmp(rest[0], "--version") == 0) {
      std::printf("xquant %s (ABI %u.%u)\n", XQUANT_VERSION, XQ_ABI_MAJOR(XQ_ABI_VERSION), XQ_ABI_MINOR(XQ_ABI_VERSION));
      return 0;
    }
    std::string name = rest[0];
    for (const auto& c : kCommands)
      if (name == c.name) return c.run(options, static_cast<int>(rest.size()) - 1, rest.data() + 1);
    std::vector<std::string> names;
    for (const auto& c : kCommands) names.emplace_back(c.name);
    std::string near = nearest(name, names);
    throw UsageError(fmt::format("unknown command '{}'{}", name, near.empty() ? "" : fmt::format("; did you mean '{}'?", near)));
  } catch (const UsageError& e) {
    std::fprintf(stderr, "xquant: %s\n(see 'xquant --help')\n", e.what());
    return 2;
  } catch (const Error& e) {
    if (e.status() == XQ_ERR_CANCELLED || cancel_requested()) return report_interrupted();
    std::fprintf(stderr, "xquant: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    if (cancel_requested()) return report_interrupted();
    std::fprintf(stderr, "xquant: internal error: %s\n", e.what());
    return 1;
  }
}
