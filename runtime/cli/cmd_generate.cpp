// cmd_generate.cpp: `xquant generate --model PATH --prompt TEXT [-n N] [--temp T] [--seed S]`:
// continues a prompt with the inference engine (greedy at temperature 0),
// for any checkpoint the loaders read, quantized ones included.
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "engine/device_weights.hpp"
#include "engine/evaluate.hpp"
#include "engine/load_phases.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace xquant::cli {

int cmd_generate(const RuntimeOptions& options, int argc, char** argv) {
  Args args("generate", "Continue a prompt (greedy at --temp 0).",
            {{"model", "PATH", "checkpoint (file or directory)", true},
             {"prompt", "TEXT", "prompt text (\"\" = start from BOS)"},
             {"n", "N", "tokens to generate (default 64)", false, 'n'},
             {"temp", "T", "sampling temperature (default 0 = greedy)"},
             {"seed", "S", "sampling seed (default 0)"},
             {"provider", "NAME", "kernel provider: cpu (default) or cuda (NVIDIA GPU)"},
             {"device-weights", "W", "dense Linear weights on a device provider: auto (as stored: BF16 for a BF16 checkpoint, else F32; default), bf16, f32"},
             {"tokenizer", "PATH", "take the vocabulary from another checkpoint (e.g. a GGUF)"},
             {"json", "", "print a JSON object (text, token ids, timings)"}});
  if (!args.parse(argc, argv)) return 0;
  GenerateOptions go;
  go.n_tokens = args.get_int("n", 64);
  go.temperature = static_cast<float>(args.get_double("temp", 0.0));
  go.seed = static_cast<uint64_t>(args.get_int("seed", 0));
  if (go.n_tokens < 0) throw UsageError("-n must be >= 0");
  if (go.temperature < 0) throw UsageError("--temp must be >= 0");
  Runtime runtime(options);
  load_phase("runtime and plugins");
  ModelOptions mo;
  mo.provider = args.get_or("provider", "cpu");
  mo.tokenizer_from = args.get_or("tokenizer", "");
  mo.tokenizer_first = true;  // its load's heap given back before the weights (peak RSS)
  mo.device_weights = device_weights_from_name(args.get_or("device-weights", "auto"), "--device-weights");
  auto model = Model::open(runtime, *args.get("model"), mo);
  std::string prompt = args.get_or("prompt", "");
  auto r = generate(*model, prompt, go);
  load_phase("generate (prefill and the new tokens)");
  if (args.flag("json")) {
    size_t n = r.tokens.size();
    nlohmann::json j{{"prompt", prompt},
                     {"prompt_tokens", r.prompt_tokens},
                     {"tokens", r.tokens},
                     {"text", r.text},
                     {"full_text", r.full_text},
                     {"prefill_seconds", r.prefill_seconds},
                     {"decode_seconds", r.decode_seconds},
                     {"decode_tokens_per_second", r.decode_seconds > 0 && n > 1 ? (n - 1) / r.decode_seconds : 0.0},
                     // Bytes of weights one decode step reads, and the form
                     // lm_head runs in (XQUANT_TABLES): counters, not timings.
                     {"weight_bytes_per_token", model->weight_bytes_per_token()},
                     {"lm_head_layout", model->lm_head().layout}};
    if (r.decode_steps > 0) {
      // Per decode step: provider ops, jobs handed to the thread pool, and
      // how many of those had to wake a parked worker (XQUANT_POOL_SPIN_US).
      const double steps = static_cast<double>(r.decode_steps);
      j["decode_per_token"] = {{"ops", static_cast<double>(r.decode_ops) / steps},
                               {"pool_jobs", static_cast<double>(r.decode_pool_jobs) / steps},
                               {"pool_wakeups", static_cast<double>(r.decode_pool_wakeups) / steps},
                               {"pool_parks", static_cast<double>(r.decode_pool_parks) / steps}};
    }
    // Generated text can end inside a UTF-8 sequence (a byte-level token
    // stream cut at -n) and a prompt may hold any bytes: such bytes are
    // printed as U+FFFD rather than refused by the JSON writer.
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s\n", r.full_text.c_str());
  }
  return 0;
}

}  // namespace xquant::cli
