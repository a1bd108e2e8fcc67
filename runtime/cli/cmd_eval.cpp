// cmd_eval.cpp: `xquant eval --model PATH --text FILE [--ctx N] [--max-tokens M] [--json]`:
// perplexity of a text file under the protocol of docs/engine.md (one BOS,
// consecutive ctx-token windows, every token but each window's first scored),
// for any checkpoint the loaders read, quantized ones included.
// `--protocol llama-perplexity [--chunks K]` scores the windows llama.cpp's
// llama-perplexity scores instead (engine/perplexity_chunks.hpp), so the two
// engines can be compared on one file.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "engine/device_weights.hpp"
#include "core/error.hpp"
#include "core/progress.hpp"
#include "engine/evaluate.hpp"
#include "engine/perplexity_chunks.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace xquant::cli {

int cmd_eval(const RuntimeOptions& options, int argc, char** argv) {
  Args args("eval", "Perplexity of a text file (one BOS, consecutive windows of --ctx tokens).",
            {{"model", "PATH", "checkpoint (file or directory)", true},
             {"text", "FILE", "UTF-8 text to score", true},
             {"ctx", "N", "window length in tokens (default 512)"},
             {"max-tokens", "M", "score only the first M tokens of the text (0 = all)"},
             {"provider", "NAME", "kernel provider: cpu (default) or cuda (NVIDIA GPU)"},
             {"device-weights", "W", "dense Linear weights on a device provider: auto (as stored: BF16 for a BF16 checkpoint, else F32; default), bf16, f32"},
             {"tokenizer", "PATH", "take the vocabulary from another checkpoint (e.g. a GGUF)"},
             {"protocol", "P", "xquant (default) | llama-perplexity (llama.cpp's chunks: BOS-led, second half scored)"},
             {"chunks", "K", "--protocol llama-perplexity: score only the first K chunks (0 = all)"},
             {"json", "", "print a JSON object"}});
  if (!args.parse(argc, argv)) return 0;
  long long ctx = args.get_int("ctx", 512);
  long long max_tokens = args.get_int("max-tokens", 0);
  if (ctx < 2) throw UsageError("--ctx must be at least 2");
  if (max_tokens < 0) throw UsageError("--max-tokens must be >= 0");
  std::string protocol = args.get_or("protocol", "xquant");
  if (protocol != "xquant" && protocol != "llama-perplexity")
    throw UsageError("--protocol takes 'xquant' or 'llama-perplexity', got '" + protocol + "'");
  long long chunks = args.get_int("chunks", 0);
  if (chunks < 0) throw UsageError("--chunks must be >= 0");
  if (protocol == "xquant" && args.get("chunks")) throw UsageError("--chunks is an option of --protocol llama-perplexity");
  if (protocol == "llama-perplexity" && args.get("max-tokens"))
    throw UsageError("--max-tokens is an option of --protocol xquant (llama-perplexity counts --chunks)");
  std::string text_path = *args.get("text");
  std::ifstream in(text_path, std::ios::binary);
  if (!in) fail(XQ_ERR_IO, "cannot read text file '{}'", text_path);
  std::stringstream ss;
  ss << in.rdbuf();

  Runtime runtime(options);
  ModelOptions mo;
  mo.provider = args.get_or("provider", "cpu");
  mo.tokenizer_from = args.get_or("tokenizer", "");
  mo.tokenizer_first = true;  // its load's heap given back before the weights (peak RSS)
  mo.device_weights = device_weights_from_name(args.get_or("device-weights", "auto"), "--device-weights");
  auto model = Model::open(runtime, *args.get("model"), mo);
  auto report = [](uint64_t done, uint64_t total) { Progress::report("eval", done, total, "tokens"); };
  PerplexityResult r;
  if (protocol == "llama-perplexity") {
    r = perplexity_llama_chunks(*model, llama_perplexity_tokens(*model, ss.str()), ctx, chunks, report);
  } else {
    r = perplexity(*model, eval_tokens(*model, ss.str(), static_cast<uint64_t>(max_tokens)), ctx, report);
  }
  if (args.flag("json")) {
    nlohmann::json j{{"model", *args.get("model")},
                     {"text", text_path},
                     {"protocol", protocol},
                     {"ctx", r.ctx},
                     {"tokens_total", r.tokens_total},
                     {"tokens_scored", r.tokens_scored},
                     {"windows", r.windows},
                     {"mean_nll", r.mean_nll},
                     {"perplexity", r.perplexity},
                     {"seconds", r.seconds},
                     {"tokens_per_second", r.seconds > 0 ? static_cast<double>(r.tokens_scored) / r.seconds : 0.0},
                     {"threads", runtime.pool().size()},
                     {"provider", model->kernels().name()}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("model        %s\n", args.get("model")->c_str());
    std::printf("tokens       %llu (scored %llu in %llu windows of %lld)\n",
                static_cast<unsigned long long>(r.tokens_total), static_cast<unsigned long long>(r.tokens_scored),
                static_cast<unsigned long long>(r.windows), static_cast<long long>(r.ctx));
    std::printf("mean NLL     %.6f\n", r.mean_nll);
    std::printf("perplexity   %.4f\n", r.perplexity);
    std::printf("time         %.1f s (%.0f tokens/s, %u threads)\n", r.seconds,
                r.seconds > 0 ? static_cast<double>(r.tokens_scored) / r.seconds : 0.0, runtime.pool().size());
  }
  return 0;
}

}  // namespace xquant::cli
