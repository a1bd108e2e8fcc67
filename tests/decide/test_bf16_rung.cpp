// test_bf16_rung.cpp: the fallback ladder's bf16 rung as written. stories260K
// (an F32 checkpoint) at W4 g32 with rtn the only candidate (data-free, so
// the runner writes exactly the int4 weights the decision evaluated) and a
// KLD target out of reach within --max-bytes: the fallback moves some groups
// to bf16. Their weights must be stored as BF16 (2 bytes a weight, which is
// what the byte budget counted), the other Linears quantized, and the
// written checkpoint, reloaded by the engine, must score what the decision
// evaluated in memory (BF16-rounded weights there too).
#include "scoped_env.hpp"
#include "test_files.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <sys/wait.h>

// In a namespace of its own: the unity build (tests/CMakeLists.txt) compiles this
// file in one batch with other test files whose helpers have the same names.
namespace test_bf16_rung {

namespace {

const std::string kShared = XQUANT_SHARED_DIR;

int run_cli(const std::string& args, std::string& out) {
  FILE* p = ::popen((std::string(XQUANT_CLI) + " --quiet quantize " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) out += buf;
  const int s = p ? ::pclose(p) : -1;
  return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

// The safetensors header of every file in `dir`: tensor name -> dtype.
std::map<std::string, std::string> stored_dtypes(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    std::ifstream in(e.path(), std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    std::string header(n, '\0');
    in.read(header.data(), static_cast<std::streamsize>(n));
    const nlohmann::json tensors = nlohmann::json::parse(header);
    for (const auto& [name, t] : tensors.items())
      if (name != "__metadata__") out[name] = t["dtype"];
  }
  return out;
}

}  // namespace

TEST(Bf16Rung, DenseGroupsAreWrittenInBf16AndReloadAsEvaluated) {
  // The written checkpoint must score what the search evaluated with float
  // activations (the CLI child inherits this).
  const xquant::test::FloatPrefill float_prefill;
  xquant::test::TempDir dir;
  std::string log;
  const int status =
      run_cli("--model " + kShared + "/models/stories260K-hf --out " + (dir / "out").string() +
                  " --algorithm auto --candidates rtn --group-size 32 --calibration " + kShared +
                  "/data/tinystories/tinystories_val.subset.txt --tokenizer " + kShared +
                  "/models/stories260K/stories260K.gguf --samples 4 --seq-len 64 --accuracy-text " + kShared +
                  "/data/wikitext-2-raw/wiki.test.raw --max-tokens 512 --max-increase 0.000001 --fallback bf16 "
                  "--max-bytes 250000 --report " + (dir / "report.html").string(),
              log);
  ASSERT_EQ(status, 0) << log;
  std::ifstream in(dir / "report.json");
  const nlohmann::json j = nlohmann::json::parse(in);

  // Some groups dense, not all: the budget (250,000 bytes) sits between
  // int4 everywhere (136,000) and bf16 everywhere (226,560 weights x 2).
  std::set<std::string> dense_modules;
  uint64_t dense_params = 0;
  for (const auto& g : j["groups"]) {
    EXPECT_EQ(g["dense_bytes"].get<uint64_t>(), 2 * g["params"].get<uint64_t>()) << g["name"];
    if (g["rung"] == "dense") {
      for (const auto& m : g["modules"]) dense_modules.insert(m.get<std::string>());
      dense_params += g["params"].get<uint64_t>();
    }
  }
  ASSERT_FALSE(dense_modules.empty()) << log;
  ASSERT_LT(dense_modules.size(), j["groups"].size() * 2) << "every group dense: nothing mixed to check";
  EXPECT_EQ(j["fallback_steps"].back()["dense_bytes"].get<uint64_t>(), 2 * dense_params);

  // Stored: BF16 for the dense groups' weights, packed codes for the rest.
  const auto dtypes = stored_dtypes(dir / "out");
  for (const auto& m : dense_modules) {
    ASSERT_TRUE(dtypes.count(m + ".weight")) << m;
    EXPECT_EQ(dtypes.at(m + ".weight"), "BF16") << m;
    EXPECT_FALSE(dtypes.count(m + ".weight_packed")) << m;
  }
  size_t packed = 0;
  for (const auto& [name, dtype] : dtypes) packed += name.size() > 14 && name.ends_with(".weight_packed");
  EXPECT_EQ(packed + dense_modules.size(), 35u);  // 5 layers x 7 Linears: each either packed or BF16

  // Reloaded, the written checkpoint scores what was evaluated in memory:
  // the same weights (rtn codes and scales, BF16 dense) through the same
  // engine, so only the float summation order differs (quantized kernels
  // against dequantized F32 weights). Seen: 5e-8 relative on perplexity,
  // 3e-8 on a KLD of 0.157; bounds 1e-4 relative and 1e-5 absolute.
  const nlohmann::json* simulated = nullptr;
  const nlohmann::json* written = nullptr;
  for (const auto& v : j["variants"])
    if (v["name"] == "auto+fallback") (v["source"] == "written" ? written : simulated) = &v;
  ASSERT_TRUE(simulated && written) << j["variants"];
  const double ppl_s = (*simulated)["accuracy"]["ppl"], ppl_w = (*written)["accuracy"]["ppl"];
  const double kld_s = (*simulated)["accuracy"]["kld"], kld_w = (*written)["accuracy"]["kld"];
  EXPECT_LT(std::fabs(ppl_w / ppl_s - 1.0), 1e-4) << ppl_s << " vs " << ppl_w;
  EXPECT_LT(std::fabs(kld_w - kld_s), 1e-5) << kld_s << " vs " << kld_w;
}

}  // namespace test_bf16_rung
